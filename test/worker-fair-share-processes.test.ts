/**
 * Fair sharing with real worker processes (src/worker/fair-share.ts): two workers of three slots each.
 * A tenant alone runs jobs in all six slots at once; two, then three tenants with backlogs converge to equal shares
 * (within one slot per worker process); a tenant that becomes active gets a slot at the next pickup;
 * a tenant's `max_running_jobs` stays a hard limit below its share.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLimits } from '../src/tenants/limits.ts';
import type { CreatedTenant } from '../src/tenants/repository.ts';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, spawnWorker, waitFor, type WorkerProcess } from './support/worker.ts';

const SLOTS_PER_WORKER = 3;
const WORKERS = 2;
const SLOTS = SLOTS_PER_WORKER * WORKERS;
/** One chunk this long per job: slots turn over several times a second. */
const JOB = { type: 'synthetic', input: { chunks: 1, chunk_ms: 300 } };
/** The same, of the fixture type that records when each chunk's code ran (in `chunk_runs`). */
const COUNTED = { type: 'counted', input: { chunks: 1, chunk_ms: 300 } };

let t: TestService;
const workers: WorkerProcess[] = [];
beforeAll(async () => {
  t = await startTestService({ roles: ['api'], env: { LONGHAUL_JOB_TYPES: FIXTURE_TYPES } });
  // Made here: two workers starting their first `counted` jobs at once would race to create it.
  await t.service.pool.query(
    'CREATE TABLE chunk_runs (id bigserial PRIMARY KEY, job_id uuid, chunk int, pid int, started timestamptz, ended timestamptz)',
  );
  for (let i = 0; i < WORKERS; i++)
    workers.push(await spawnWorker(t.db.url, { LONGHAUL_WORKER_CONCURRENCY: String(SLOTS_PER_WORKER) }));
}, 60_000);
afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await t.stop();
});

/** Submits `n` jobs for `tenant`, eight at a time (a backlog arrives faster than it drains). */
async function submit(tenant: CreatedTenant, n: number): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left > 0) {
        left--;
        const res = await t.api('/v1/jobs', { method: 'POST', key: tenant.api_key, json: JOB });
        expect(res.status).toBe(202);
      }
    }),
  );
}

/** Submits `n` jobs for `tenant` in one batch: all waiting at once, however loaded the machine is. */
async function submitAtOnce(tenant: CreatedTenant, n: number, job: object = JOB): Promise<void> {
  const res = await t.api('/v1/jobs/batch', {
    method: 'POST',
    key: tenant.api_key,
    json: { jobs: Array.from({ length: n }, () => job) },
  });
  expect(res.status).toBe(202);
}

/**
 * The most jobs of `tenant` RUNNING at once, from when each started and finished: its claim's and its
 * completion's transaction times, so a job claimed after another's completion committed never overlaps it.
 */
async function mostAtOnce(tenant: CreatedTenant): Promise<number | undefined> {
  const { rows } = await t.service.pool.query<{ n: number }>(
    `SELECT max((SELECT count(*) FROM jobs k
                  WHERE k.tenant_id = j.tenant_id AND k.started_at <= j.started_at AND k.finished_at > j.started_at))::int AS n
       FROM jobs j WHERE j.tenant_id = $1`,
    [tenant.id],
  );
  return rows[0]?.n;
}

/**
 * The most `counted` jobs of `tenant` whose code ran at once, from when each chunk's code started and
 * ended. A job's slot frees when its code returns, before its completion commits: the next job may be
 * claimed before that commit, so the jobs' transaction times overlap more than their slots.
 */
async function mostCodeAtOnce(tenant: CreatedTenant): Promise<number | undefined> {
  const { rows } = await t.service.pool.query<{ n: number }>(
    `WITH r AS (SELECT c.started, c.ended FROM chunk_runs c JOIN jobs j ON j.id = c.job_id WHERE j.tenant_id = $1)
     SELECT max((SELECT count(*) FROM r k WHERE k.started <= r.started AND k.ended > r.started))::int AS n FROM r`,
    [tenant.id],
  );
  return rows[0]?.n;
}

/** Jobs RUNNING now, per tenant. */
async function running(tenants: CreatedTenant[]): Promise<number[]> {
  const { rows } = await t.service.pool.query<{ tenant_id: string; n: number }>(
    `SELECT tenant_id, count(*)::int AS n FROM jobs WHERE status = 'RUNNING' AND tenant_id = ANY($1::uuid[]) GROUP BY 1`,
    [tenants.map((x) => x.id)],
  );
  return tenants.map((x) => rows.find((r) => r.tenant_id === x.id)?.n ?? 0);
}

/** Waits until the running counts of `tenants` pass `ok` in one reading. */
async function until(what: string, tenants: CreatedTenant[], ok: (n: number[]) => boolean): Promise<number[]> {
  return waitFor(
    what,
    async () => {
      const n = await running(tenants);
      return ok(n) ? n : undefined;
    },
    30_000,
    20,
  );
}

/** Waits until the tenants have no job left PENDING or RUNNING. */
async function drained(tenants: CreatedTenant[]): Promise<void> {
  await waitFor(
    'backlogs drained',
    async () => {
      const { rows } = await t.service.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM jobs WHERE status IN ('PENDING', 'RUNNING') AND tenant_id = ANY($1::uuid[])`,
        [tenants.map((x) => x.id)],
      );
      return rows[0]?.n === 0;
    },
    90_000,
    100,
  );
}

const share = (tenants: number) => SLOTS / tenants;
/** Within one slot per worker process of an equal share. */
const fair = (tenants: number) => (n: number[]) => n.every((x) => Math.abs(x - share(tenants)) <= WORKERS - 1);

describe('fair sharing across worker processes', () => {
  it('lets a tenant alone use every slot of every worker', async () => {
    const a = await t.newTenant();
    await submitAtOnce(a, 3 * SLOTS, COUNTED);
    await drained([a]);
    expect(await mostCodeAtOnce(a)).toBe(SLOTS);
  }, 120_000);

  it('keeps a tenant’s max_running_jobs as a hard limit below its share', async () => {
    const a = await t.newTenant();
    await setLimits(t.service.pool, a.id, { max_running_jobs: 2 });
    // Every worker idle with a reading of the limits older than the limit: no fetch may take more than the
    // limit, whatever it read before, and no two workers' fetches may fill the same slot.
    await submitAtOnce(a, 2 * SLOTS);
    await drained([a]);
    expect(await mostAtOnce(a)).toBe(2);
  }, 120_000);

  it('gives a newly active tenant its share at the next pickups, then equal shares to two and three tenants', async () => {
    const a = await t.newTenant();
    const b = await t.newTenant();
    const c = await t.newTenant();
    await submit(a, 20 * SLOTS);
    await until('the first tenant at full concurrency', [a], ([n]) => n === SLOTS);
    await submit(b, 20 * SLOTS);
    // Jobs take 300 ms: the slots that free within one job's time go to the new tenant first.
    const started = Date.now();
    await until('the second tenant running', [a, b], ([, nb]) => (nb ?? 0) >= 1);
    expect(Date.now() - started).toBeLessThan(5_000);
    await until('two equal shares', [a, b], fair(2));
    await submit(c, 5 * SLOTS);
    await until('three equal shares', [a, b, c], fair(3));
    // A tenant whose backlog empties gives its slots back: the others share them.
    await drained([c]);
    await until('two equal shares again', [a, b], fair(2));
  }, 180_000);
});
