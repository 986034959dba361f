/**
 * The fetcher (src/worker/fetcher.ts) against a real Postgres and pg-boss: a job announced while the
 * last reading of the tenants' demand says no tenant could start one is fetched at the announcement,
 * not at the fallback poll; a reading that counted the worker's own job, ended since, no longer does;
 * an idle worker whose reading saw fewer jobs waiting than its free slots fetches plainly at an
 * announcement. The poll and the reading's lifetime are stretched past the test's deadline, so a missed
 * wake-up fails the test instead of slowing it down.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../src/db/pool.ts';
import { TENANT_DEMAND } from '../src/jobs/lifecycle.ts';
import { QUEUES } from '../src/jobs/queues.ts';
import { createLogger } from '../src/observability/logger.ts';
import { fetchExecutions, queueTable, type FetchedExecution } from '../src/worker/fair-fetch.ts';
import { BOSS_CHANNEL_SQL, FETCH_SESSION, Fetcher } from '../src/worker/fetcher.ts';
import { insertJob, leasedTo } from './support/jobs.ts';
import { startTestService, type TestService } from './support/service.ts';

const NEVER_MS = 10 * 60_000;
/** Fetches that claim no job. */
const NO_CLAIMS = { owner: 'test', seconds: 30, rooms: new Map<string, number>() };
const DEADLINE_MS = 10_000;

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ roles: ['api'] });
});
afterAll(async () => t.stop());

/**
 * `pool`, calling `onQuery` with the name of each named statement it runs (before running it) and
 * `onDone` once it has returned; `onQuery` may hold the statement back by returning a promise. A
 * statement planned at each run has no name: its text begins with it as a comment (`/* name *\/`).
 */
function observedPool(
  pool: Pool,
  onDone: (name: string) => void,
  onQuery: (name: string) => Promise<void> | undefined = () => undefined,
): Pool {
  return new Proxy(pool, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const fn = value as (...a: unknown[]) => unknown;
      if (prop !== 'query') return fn.bind(target);
      return async (...args: unknown[]) => {
        const config = args[0];
        const named =
          typeof config === 'object' && config !== null && 'name' in config && typeof config.name === 'string'
            ? config.name
            : undefined;
        const text =
          typeof config === 'object' && config !== null && 'text' in config && typeof config.text === 'string'
            ? config.text
            : '';
        const name = named ?? /^\/\* (\w+) \*\//.exec(text)?.[1] ?? '';
        await onQuery(name);
        const result: unknown = await fn.apply(target, args);
        onDone(name);
        return result;
      };
    },
  });
}

/** Opens a fetch connection recording the name of each fetch statement it runs (`names`). */
function namedFetches(): { names: string[]; open: (url: string) => Pool } {
  const names: string[] = [];
  const record = (name: string) => void (name !== '' && names.push(name));
  return { names, open: (url) => observedPool(createPool(url, 1, 'test-fetch', FETCH_SESSION), record) };
}

/** Some fetch ran, and every one was pg-boss's plain fetch (fair-fetch.ts fetchExecutions). */
function expectPlainFetches(names: string[]): void {
  expect(names.length).toBeGreaterThan(0);
  expect(names.every((name) => name.startsWith('longhaul_fetch_claim_'))).toBe(true);
}

/** Submits a one-chunk synthetic job (as the tenant of `key`, else the service's tenant); answers its id. */
async function submitJob(key?: string): Promise<string> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    ...(key === undefined ? {} : { key }),
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } },
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** Takes every queued execution and finishes every active job: what the earlier tests left is no demand. */
async function emptyQueue(): Promise<void> {
  const { boss, pool } = t.service;
  while ((await boss.fetch(QUEUES.jobs, { batchSize: 100 })).length > 0);
  await pool.query(
    `UPDATE jobs SET status = 'COMPLETED', lease_token = NULL, finished_at = now() WHERE status IN ('PENDING', 'RUNNING')`,
  );
}

/** A backlog of 5 jobs of `tenantId`, as the reading sees it (jobs PENDING) and as the queue holds it (`prefix-i`). */
async function queueBacklog(tenantId: string, prefix: string): Promise<void> {
  const { boss, pool } = t.service;
  for (let i = 0; i < 5; i++) await insertJob(pool, tenantId);
  await boss.insert(
    QUEUES.jobs,
    Array.from({ length: 5 }, (_, i) => ({
      data: { jobId: `${prefix}-${i}` },
      group: { id: tenantId, tier: tenantId },
    })),
  );
}

/**
 * A Fetcher over `pool` with `slots()` slots, whose poll and share reading never lapse during a test,
 * recording the executions it launches; `rereadAfterChangeMs` as the Fetcher's (default its own).
 */
async function startFetcher(
  pool: Pool,
  slots: () => number,
  openFetchPool?: (url: string) => Pool,
  rereadAfterChangeMs?: number,
) {
  let stopping = false;
  const launched: FetchedExecution[] = [];
  let onLaunch: () => void = () => undefined;
  const fetcher = new Fetcher({
    pool,
    listener: t.service.listener,
    log: createLogger('silent'),
    tenantLimit: undefined,
    concurrency: slots(),
    burstSlots: 0,
    leaseSeconds: 30,
    free: () => slots() - launched.length,
    launch: (j) => {
      launched.push(j);
      onLaunch();
    },
    owner: 'test',
    // No type has room: the fetch claims nothing.
    rooms: () => new Map(),
    onCancel: () => undefined,
    stopping: () => stopping,
    pollIntervalMs: NEVER_MS,
    shareTtlMs: NEVER_MS,
    ...(openFetchPool === undefined ? {} : { openFetchPool }),
    ...(rereadAfterChangeMs === undefined ? {} : { rereadAfterChangeMs }),
  });
  await fetcher.start(t.db.url, await queueTable(t.service.boss, QUEUES.jobs));
  return {
    fetcher,
    launched,
    /** Resolves once `done` holds (checked now and at each launch). */
    launchedWhen: (done: () => boolean) =>
      new Promise<void>((resolve) => {
        onLaunch = () => done() && resolve();
        onLaunch();
      }),
    stop: async () => {
      stopping = true;
      await fetcher.stopped();
      await fetcher.unsubscribe();
    },
  };
}

describe('fetcher', () => {
  it('fetches a job announced after a reading with jobs running and none waiting, without the poll', async () => {
    // A job of the tenant running elsewhere: the reading has demand, and no tenant with a job waiting.
    await insertJob(t.service.pool, t.tenant.id, leasedTo(randomUUID()));
    let firstRead: () => void = () => undefined;
    const read = new Promise<void>((resolve) => (firstRead = resolve));
    const { launched, launchedWhen, stop } = await startFetcher(
      observedPool(t.service.pool, (name) => name === TENANT_DEMAND && firstRead()),
      () => 4,
    );
    try {
      await read;
      const id = await submitJob();
      const fetched = launchedWhen(() => launched.some((j) => j.data.jobId === id));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const missed = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the announced job was left to the poll')), DEADLINE_MS);
      });
      await Promise.race([fetched, missed]).finally(() => clearTimeout(timer));
      expect(launched.map((j) => j.data.jobId)).toEqual([id]);
    } finally {
      await stop();
    }
  });

  it('counts its own ended job out of the reading: an idle worker’s next fetch is pg-boss’s plain one', async () => {
    // What the first test left active, so that this tenant's is the only demand.
    await t.service.pool.query(`DELETE FROM jobs WHERE status IN ('PENDING', 'RUNNING')`);
    const tenant = await t.newTenant();
    // This worker's job, claimed before the share is read: the reading counts it running.
    const claimedAt = performance.now();
    await insertJob(t.service.pool, tenant.id, leasedTo(randomUUID()));
    // A reading is three queries sent at once, the demand's first. Readings after the first are held
    // back, so the fetch decides on the first one, as a fetch soon after a job's end does.
    let readings = 0;
    let firstReadLeft = 0;
    let firstRead: () => void = () => undefined;
    const read = new Promise<void>((resolve) => (firstRead = resolve));
    let releaseReads: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (releaseReads = resolve));
    const fetches = namedFetches();
    const { fetcher, launched, launchedWhen, stop } = await startFetcher(
      observedPool(
        t.service.pool,
        () => void (firstReadLeft > 0 && --firstReadLeft === 0 && firstRead()),
        (name) => {
          if (name !== TENANT_DEMAND) return undefined;
          if (readings++ > 0) return held;
          firstReadLeft = 3;
          return undefined;
        },
      ),
      () => 4,
      fetches.open,
    );
    try {
      await read;
      // The fetcher keeps the reading a few promise steps after its last query returns: after them all.
      await new Promise((resolve) => setImmediate(resolve));
      fetcher.jobEnded({ tenant: tenant.id, at: claimedAt });
      const id = await submitJob(tenant.api_key);
      await launchedWhen(() => launched.some((j) => j.data.jobId === id));
      expectPlainFetches(fetches.names);
    } finally {
      releaseReads();
      await stop();
    }
  });

  it('fetches plainly at an idle pickup whose reading saw fewer jobs waiting than its free slots', async () => {
    await t.service.pool.query(`DELETE FROM jobs WHERE status IN ('PENDING', 'RUNNING')`);
    const tenant = await t.newTenant();
    // A job waiting in the reading, as a reading taken beside the last pickup's claim counts that job.
    await insertJob(t.service.pool, tenant.id);
    let firstRead: () => void = () => undefined;
    const read = new Promise<void>((resolve) => (firstRead = resolve));
    const fetches = namedFetches();
    const { launched, launchedWhen, stop } = await startFetcher(
      observedPool(t.service.pool, (name) => name === TENANT_DEMAND && firstRead()),
      () => 4,
      fetches.open,
    );
    try {
      await read;
      const id = await submitJob(tenant.api_key);
      await launchedWhen(() => launched.some((j) => j.data.jobId === id));
      expectPlainFetches(fetches.names);
    } finally {
      await stop();
      await t.service.pool.query(`DELETE FROM jobs WHERE tenant_id = $1`, [tenant.id]);
    }
  });
});

describe('fair fetch', () => {
  it('takes a tenant’s job behind another’s backlog at the next free slot, each within its cap', async () => {
    const { boss, pool } = t.service;
    const table = await queueTable(boss, QUEUES.jobs);
    const send = (tenant: string, n: number, priority = 0) =>
      boss.insert(
        QUEUES.jobs,
        Array.from({ length: n }, (_, i) => ({
          data: { jobId: `${tenant}-${priority}-${i}` },
          group: { id: tenant, tier: tenant },
          priority,
        })),
      );
    const fetch = async (free: number, cap: number, caps: Record<string, number> = {}) =>
      (await fetchExecutions(pool, table, QUEUES.jobs, free, { cap, caps }, NO_CLAIMS)).map((j) => j.data.jobId);
    const a = `a-${randomUUID()}`;
    const b = `b-${randomUUID()}`;
    await send(a, 20);
    // A alone takes every slot.
    const first = await fetch(3, 4);
    expect(first.filter((id) => id.startsWith(a))).toHaveLength(3);
    await send(b, 2);
    // B's jobs are younger than A's backlog, yet the next slot goes to B, which runs nothing.
    const taken = await fetch(1, 4);
    expect(taken).toHaveLength(1);
    expect(taken[0]?.startsWith(b)).toBe(true);
    // A has 3 running, B 1: the next two slots go one to each, and A stops at its cap.
    const next = await fetch(5, 4);
    expect(next.filter((id) => id.startsWith(a))).toHaveLength(1);
    expect(next.filter((id) => id.startsWith(b))).toHaveLength(1);
    // A's own, lower limit holds whatever the free slots; a higher priority goes first within the tenant.
    await send(a, 1, 5);
    expect(await fetch(4, 8, { [a]: 4 })).toEqual([]);
    expect(await fetch(4, 8, { [a]: 5 })).toEqual([`${a}-5-0`]);
  });
});

describe('fetcher, one tenant alone', () => {
  it('fetches fairly once another tenant’s job is announced, though the reading shows one tenant', async () => {
    const { pool } = t.service;
    const a = await t.newTenant();
    const b = await t.newTenant();
    // A will be alone in the queue and the reading.
    await emptyQueue();
    await queueBacklog(a.id, 'a');
    let slots = 1;
    const { fetcher, launched, launchedWhen, stop } = await startFetcher(pool, () => slots);
    const launches = (n: number) => launchedWhen(() => launched.length >= n);
    try {
      // The one slot goes to A, under a reading in which A is alone.
      await launches(1);
      expect(launched[0]?.data.jobId).toMatch(/^a-/);
      // The listener hands a notification to every subscriber at once: heard here, heard by the fetcher.
      const { rows } = await pool.query<{ ch: string }>(`SELECT ${BOSS_CHANNEL_SQL} AS ch`);
      let heard: () => void = () => undefined;
      const announced = new Promise<void>((resolve) => (heard = resolve));
      const unsubscribe = await t.service.listener.subscribe([rows[0]?.ch ?? ''], {
        onNotification: () => heard(),
        onConnect: () => undefined,
      });
      const id = await submitJob(b.api_key);
      await announced;
      await unsubscribe();
      // A's job ends: the next fetch, still under that reading, must not pass over B's younger job.
      slots = 2;
      const second = launches(2);
      fetcher.jobEnded();
      await second;
      expect(launched[1]?.data.jobId).toBe(id);
    } finally {
      await stop();
    }
  });
});

describe('fetcher, readings as jobs end', () => {
  /**
   * With `tenants` each holding a backlog (jobs PENDING and their executions queued), a worker of one
   * slot whose readings after a change are not spaced: the readings of the tenants' demand begun by the
   * time `ends` jobs after the first have been fetched, each fetch following a job's end. (The executions
   * stay active: with two tenants, a third fetch would find both at their share of the one slot.)
   */
  async function readingsOverEnds(tenants: number, ends: number): Promise<number> {
    const { pool } = t.service;
    // The backlogs below are all the demand.
    await emptyQueue();
    for (let n = 0; n < tenants; n++) {
      const tenant = await t.newTenant();
      await queueBacklog(tenant.id, tenant.id);
    }
    let readings = 0;
    let slots = 1;
    const observed = observedPool(
      pool,
      () => undefined,
      (name) => {
        // Counted as the reading is sent: a reading a fetch's decision begins is counted before that fetch runs.
        if (name === TENANT_DEMAND) readings++;
        return undefined;
      },
    );
    const { fetcher, launched, launchedWhen, stop } = await startFetcher(observed, () => slots, undefined, 0);
    try {
      await launchedWhen(() => launched.length >= 1);
      for (let ended = 1; ended <= ends; ended++) {
        slots++;
        const next = launchedWhen(() => launched.length > ended);
        fetcher.jobEnded();
        await next;
      }
      return readings;
    } finally {
      await stop();
    }
  }

  it('reads the demand once while one tenant’s backlog drains, and after each end with two tenants', async () => {
    // Alone, its jobs' ends change no share: the first reading serves every fetch (the poll and the
    // reading's lifetime never lapse here).
    expect(await readingsOverEnds(1, 3)).toBe(1);
    // Two tenants: an end may leave one below its share, and is followed by a reading.
    expect(await readingsOverEnds(2, 1)).toBe(2);
  });
});
