/**
 * Scheduling on POST /v1/jobs, through a real worker: delayed jobs (`run_at`, `delay_seconds`) that do
 * not start before their time and can be cancelled meanwhile, priorities over a backlog with one worker
 * slot, and time limits (`timeout_seconds` across executions, `expire_after_seconds`) with the job
 * type's defaults and maxima.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, waitFor } from './support/worker.ts';

const TIMED_TYPES = FIXTURE_TYPES.replace(/job-types\.ts$/, 'timed-job-types.ts');

let t: TestService;
beforeAll(async () => {
  t = await startTestService({
    roles: ['api', 'worker'],
    env: {
      LONGHAUL_JOB_TYPES: TIMED_TYPES,
      LONGHAUL_WORKER_CONCURRENCY: '1',
      LONGHAUL_LEASE_SECONDS: '2',
      LONGHAUL_MONITOR_INTERVAL_SECONDS: '0.3',
      LONGHAUL_EXECUTION_BUDGET_SECONDS: '1',
      LONGHAUL_SCHEDULE_HORIZON_SECONDS: '86400',
    },
  });
  // The fixture job type records its chunks through its own pool.
  process.env.DATABASE_URL = t.db.url;
});
afterAll(async () => t.stop());

interface Job {
  id: string;
  status: string;
  scheduled_for: string | null;
  priority: number;
  timeout_seconds: number | null;
  expires_at: string | null;
  started_at: string | null;
  error: { kind?: string } | null;
  error_history: Array<{ kind: string }>;
}

async function submit(body: Record<string, unknown>): Promise<Response> {
  return t.api('/v1/jobs', { method: 'POST', json: body });
}

async function created(body: Record<string, unknown>): Promise<Job> {
  const res = await submit(body);
  expect(res.status, await res.clone().text()).toBe(202);
  return (await res.json()) as Job;
}

async function get(id: string): Promise<Job> {
  return (await (await t.api(`/v1/jobs/${id}`)).json()) as Job;
}

const settled = (id: string, ms = 20_000) =>
  waitFor(
    `job ${id} finished`,
    async () => {
      const j = await get(id);
      return ['COMPLETED', 'FAILED', 'CANCELLED'].includes(j.status) ? j : undefined;
    },
    ms,
  );

const quick = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } };

async function jobCount(): Promise<number> {
  const { rows } = await t.service.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
  return rows[0]?.n ?? 0;
}

describe('delayed jobs', () => {
  it('waits PENDING with scheduled_for until run_at, then runs', async () => {
    const at = new Date(Date.now() + 1500);
    const job = await created({ ...quick, run_at: at.toISOString() });
    expect(job.status).toBe('PENDING');
    expect(job.scheduled_for).toBe(at.toISOString());
    const done = await settled(job.id);
    expect(done.status).toBe('COMPLETED');
    expect(Date.parse(done.started_at ?? '')).toBeGreaterThanOrEqual(at.getTime());
  });

  it('takes delay_seconds from submission, and a run_at with an offset', async () => {
    const before = Date.now();
    const job = await created({ ...quick, delay_seconds: 3600 });
    const at = Date.parse(job.scheduled_for ?? '');
    expect(at).toBeGreaterThanOrEqual(before + 3600_000);
    expect(at).toBeLessThan(Date.now() + 3600_000 + 1000);
    const offset = await created({ ...quick, run_at: '2099-01-01T03:00:00+02:00' }).catch(() => undefined);
    expect(offset).toBeUndefined(); // beyond the 1-day horizon of this service
    const near = new Date(Date.now() + 3600_000);
    const local = near.toISOString().replace('Z', '+00:00');
    expect((await created({ ...quick, run_at: local })).scheduled_for).toBe(near.toISOString());
  });

  it('runs a past run_at at once', async () => {
    const job = await created({ ...quick, run_at: '2020-01-01T00:00:00Z' });
    expect(job.scheduled_for).toBe('2020-01-01T00:00:00.000Z');
    expect((await settled(job.id, 10_000)).status).toBe('COMPLETED');
  });

  it('cancels a scheduled job, which then never starts', async () => {
    const job = await created({ ...quick, delay_seconds: 1 });
    const res = await t.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    // Past its time, its execution is fetched and skipped: it stays CANCELLED and never started.
    await waitFor('execution settled', async () => {
      const { rows } = await t.service.pool.query<{ state: string }>('SELECT state FROM pgboss.job WHERE id = $1', [
        job.id,
      ]);
      return rows[0]?.state === 'completed';
    });
    const after = await get(job.id);
    expect(after.status).toBe('CANCELLED');
    expect(after.started_at).toBeNull();
  });

  it('lists the jobs waiting for their time with scheduled=true', async () => {
    const waiting = await created({ ...quick, delay_seconds: 600 });
    const now = await created(quick);
    const ids = async (q: string) =>
      ((await (await t.api(`/v1/jobs?${q}&limit=200`)).json()) as { data: Job[] }).data.map((j) => j.id);
    expect(await ids('scheduled=true')).toContain(waiting.id);
    expect(await ids('scheduled=true')).not.toContain(now.id);
    expect(await ids('scheduled=false')).toContain(now.id);
    expect(await ids('scheduled=false')).not.toContain(waiting.id);
  });

  it('refuses bad timing values with a 422 naming the field, and writes nothing', async () => {
    const before = await jobCount();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ run_at: 'tomorrow' }, 'run_at'],
      [{ run_at: '2030-01-01T00:00:00' }, 'run_at'], // no offset: not RFC 3339
      [{ run_at: new Date(Date.now() + 2 * 86_400_000).toISOString() }, 'run_at'],
      [{ delay_seconds: 2 * 86_400 }, 'delay_seconds'],
      [{ delay_seconds: -1 }, 'delay_seconds'],
      [{ delay_seconds: 1.5 }, 'delay_seconds'],
      [{ run_at: new Date().toISOString(), delay_seconds: 5 }, 'delay_seconds'],
      [{ priority: 101 }, 'priority'],
      [{ priority: -101 }, 'priority'],
      [{ priority: '5' }, 'priority'],
      [{ timeout_seconds: 0 }, 'timeout_seconds'],
      [{ expire_after_seconds: 0 }, 'expire_after_seconds'],
    ];
    for (const [extra, field] of cases) {
      const res = await submit({ ...quick, ...extra });
      const body = (await res.json()) as { errors?: Array<{ field: string }> };
      expect([res.status, body.errors?.map((e) => e.field)], JSON.stringify(extra)).toEqual([422, [field]]);
    }
    expect(await jobCount()).toBe(before);
  });
});

describe('priorities', () => {
  it('starts higher priorities first from a backlog, with one worker slot', async () => {
    const blocker = await created({ type: 'timed', input: { chunks: 1, chunk_ms: 1500, deaf: false } });
    await waitFor('blocker running', async () => (await get(blocker.id)).status === 'RUNNING');
    const backlog: Array<{ id: string; priority: number }> = [];
    for (const priority of [0, -5, 10, 0, 5, 10, -5]) {
      const j = await created({ type: 'timed', input: { chunks: 1, chunk_ms: 0, deaf: false }, priority });
      expect(j.priority).toBe(priority);
      backlog.push({ id: j.id, priority });
    }
    for (const j of backlog) await settled(j.id);
    const { rows } = await t.service.pool.query<{ id: string }>(
      'SELECT job_id AS id FROM timed_runs WHERE job_id = ANY($1::uuid[]) ORDER BY started',
      [backlog.map((j) => j.id)],
    );
    const order = rows.map((r) => backlog.find((j) => j.id === r.id)?.priority);
    expect(order).toEqual([10, 10, 5, 0, 0, -5, -5]);
  });
});

describe('time limits', () => {
  it("fills in the job type's defaults and refuses more than its maxima", async () => {
    const input = { chunks: 1, chunk_ms: 0, deaf: false };
    const job = await created({ type: 'timed', input, delay_seconds: 600 });
    expect(job.timeout_seconds).toBe(600);
    expect(Date.parse(job.expires_at ?? '')).toBe(Date.parse(job.scheduled_for ?? '') + 86_400_000);
    expect((await created({ type: 'timed', input, timeout_seconds: 3600 })).timeout_seconds).toBe(3600);
    for (const [extra, field] of [
      [{ timeout_seconds: 3601 }, 'timeout_seconds'],
      [{ expire_after_seconds: 7 * 86_400 + 1 }, 'expire_after_seconds'],
    ] as const) {
      const res = await submit({ type: 'timed', input, ...extra });
      expect(res.status).toBe(422);
      expect(((await res.json()) as { errors: Array<{ field: string }> }).errors[0]?.field).toBe(field);
    }
    expect((await created(quick)).timeout_seconds).toBeNull();
  });

  it('fails a job past its timeout across executions, at a chunk boundary', async () => {
    // Chunks of 200 ms in executions of 1 s (LONGHAUL_EXECUTION_BUDGET_SECONDS): 2 s is several executions.
    const job = await created({ type: 'timed', input: { chunks: 100, chunk_ms: 200, deaf: true }, timeout_seconds: 2 });
    const done = await settled(job.id);
    expect(done.status).toBe('FAILED');
    expect(done.error?.kind).toBe('timeout');
    expect(done.error_history.at(-1)?.kind).toBe('timeout');
    const { rows } = await t.service.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM timed_runs WHERE job_id = $1',
      [job.id],
    );
    expect(rows[0]?.n).toBeGreaterThan(2);
    expect(rows[0]?.n).toBeLessThan(100);
    // Across executions: the last one that ran it is not its first (whose id is the job's).
    const { rows: execs } = await t.service.pool.query<{ handed_over: boolean }>(
      'SELECT execution_id <> id AS handed_over FROM jobs WHERE id = $1',
      [job.id],
    );
    expect(execs[0]?.handed_over).toBe(true);
  });

  it('aborts a stuck chunk through its signal when the timeout passes', async () => {
    const t0 = Date.now();
    const job = await created({
      type: 'timed',
      input: { chunks: 1, chunk_ms: 120_000, deaf: false },
      timeout_seconds: 1,
    });
    const done = await settled(job.id);
    expect(done.status).toBe('FAILED');
    expect(done.error?.kind).toBe('timeout');
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('fails a job not started by its expires_at as expired, without running it', async () => {
    const blocker = await created({ type: 'timed', input: { chunks: 1, chunk_ms: 2500, deaf: false } });
    await waitFor('blocker running', async () => (await get(blocker.id)).status === 'RUNNING');
    const job = await created({
      type: 'timed',
      input: { chunks: 1, chunk_ms: 0, deaf: false },
      expire_after_seconds: 1,
    });
    const done = await settled(job.id);
    expect(done.status).toBe('FAILED');
    expect(done.error?.kind).toBe('expired');
    expect(done.started_at).toBeNull();
    await settled(blocker.id);
    const { rows } = await t.service.pool.query('SELECT 1 FROM timed_runs WHERE job_id = $1', [job.id]);
    expect(rows).toHaveLength(0);
  });
});
