/**
 * The worker runtime in-process against a real Postgres: checkpoints and progress events, retries,
 * exhaustion into the dead-letter queue and replay, permanent failure, cancellation of a running job,
 * a job run as a chain of executions, a job of a type no worker knows, tenant fairness, the per-type
 * concurrency limit, and the stall/pending alerts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUES } from '../src/jobs/queues.ts';
import { withTransaction } from '../src/db/pool.ts';
import { sendExecution } from '../src/worker/executions.ts';
import { WorkerMonitor } from '../src/worker/monitor.ts';
import { readEvents } from '../src/realtime/events.ts';
import { DEFAULT_BACKOFF } from '../packages/sdk/src/index.ts';
import { insertJob, secondsFromNow } from './support/jobs.ts';
import { statusEvents } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, waitFor } from './support/worker.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({
    roles: ['api', 'worker'],
    env: {
      LONGHAUL_JOB_TYPES: FIXTURE_TYPES,
      LONGHAUL_LEASE_SECONDS: '2',
      LONGHAUL_MONITOR_INTERVAL_SECONDS: '0.3',
      LONGHAUL_WORKER_CONCURRENCY: '6',
      LONGHAUL_TENANT_CONCURRENCY: '3',
      LONGHAUL_EXECUTION_BUDGET_SECONDS: '1',
    },
  });
});
afterAll(async () => t.stop());

/**
 * Waits until the jobs `ids` (of the concurrency-1 fixture type `single`, which records each chunk's
 * run in chunk_runs) are COMPLETED; then how many pairs of their chunk runs overlapped in time, and how
 * many chunks ran.
 */
async function singleRuns(ids: string[]): Promise<{ overlaps: number; runs: number } | undefined> {
  await waitFor(
    'single jobs done',
    async () => {
      const { rows } = await t.service.pool.query<{ left: number }>(
        `SELECT count(*) FILTER (WHERE status <> 'COMPLETED')::int AS left FROM jobs WHERE id = ANY($1::uuid[])`,
        [ids],
      );
      return rows[0]?.left === 0;
    },
    30_000,
  );
  const { rows } = await t.service.pool.query<{ overlaps: number; runs: number }>(
    `SELECT (SELECT count(*)::int FROM chunk_runs a JOIN chunk_runs b ON a.job_id <> b.job_id AND a.started < b.ended AND b.started < a.ended
              WHERE a.job_id = ANY($1::uuid[]) AND b.job_id = ANY($1::uuid[])) AS overlaps,
            (SELECT count(*)::int FROM chunk_runs WHERE job_id = ANY($1::uuid[]) AND ended IS NOT NULL) AS runs`,
    [ids],
  );
  return rows[0];
}

interface JobBody {
  id: string;
  status: string;
  attempts: number;
  result: unknown;
  error: { message: string; permanent?: boolean } | null;
  error_history: Array<{ message: string; attempt: number }>;
  progress: { processed: number; total: number | null };
}

async function submit(type: string, input: unknown, key?: string): Promise<JobBody> {
  const res = await t.api('/v1/jobs', { method: 'POST', json: { type, input }, ...(key === undefined ? {} : { key }) });
  expect(res.status).toBe(202);
  return (await res.json()) as JobBody;
}

async function job(id: string, key?: string): Promise<JobBody> {
  return (await (await t.api(`/v1/jobs/${id}`, key === undefined ? {} : { key })).json()) as JobBody;
}

async function until(id: string, status: string, ms = 20_000): Promise<JobBody> {
  return waitFor(
    `job ${id} ${status}`,
    async () => {
      const j = await job(id);
      return j.status === status ? j : undefined;
    },
    ms,
  );
}

type EventRow = { seq: number; kind: string; data: { processed?: number; status?: string } };
async function progressEvents(id: string): Promise<EventRow[]> {
  const { rows } = await t.service.pool.query<EventRow>(
    'SELECT seq, kind, data FROM job_events WHERE job_id = $1 ORDER BY seq',
    [id],
  );
  return rows;
}

describe('worker runtime', () => {
  it('runs a job chunk by chunk, one event seq per checkpoint, to COMPLETED', async () => {
    const j = await submit('synthetic', { chunks: 5, chunk_ms: 5 });
    const done = await until(j.id, 'COMPLETED');
    expect(done.result).toEqual({ chunks: 5 });
    expect(done.progress).toEqual({ processed: 5, total: 5, percent: 100 });
    expect(done.attempts).toBe(1);
    // The claim's RUNNING event (seq 1) is in the jobs row (sql/098), as are the five checkpoints' (one
    // per chunk, start's riding with the first chunk's; each took the next seq, the last at 6: sql/041)
    // and COMPLETED (sql/099): job_events holds nothing of it. Streams read all of them in order.
    expect(await progressEvents(j.id)).toEqual([]);
    const { rows } = await t.service.pool.query(
      'SELECT event_seq, progress_seq, running_seq, finished_seq FROM jobs WHERE id = $1',
      [j.id],
    );
    expect(rows).toEqual([{ event_seq: 7, progress_seq: 6, running_seq: 1, finished_seq: 7 }]);
    const read = await readEvents(t.service.pool, j.id, 0, 100);
    expect(read.map((e) => [e.seq, e.kind, (e.data as { status?: string }).status])).toEqual([
      [1, 'status', 'RUNNING'],
      [6, 'progress', undefined],
      [7, 'status', 'COMPLETED'],
    ]);
    // Its execution was deleted as the job completed, not kept as a pg-boss completion.
    const { rows: executions } = await t.service.pool.query(
      `SELECT state FROM pgboss.job WHERE name = $1 AND data->>'jobId' = $2`,
      [QUEUES.jobs, j.id],
    );
    expect(executions).toEqual([]);
  });

  it('retries a failing attempt with backoff and then succeeds, keeping the error history', async () => {
    const j = await submit('synthetic', { chunks: 3, chunk_ms: 1, fail_attempts: 1, fail_at_chunk: 1 });
    const done = await until(j.id, 'COMPLETED');
    expect(done.attempts).toBe(2);
    expect(done.error_history).toHaveLength(1);
    expect(done.error_history[0]?.message).toContain('synthetic failure at chunk 1 on attempt 1');
    // Resumed from the checkpoint: chunk 0 was not redone (its progress would count twice).
    expect(done.progress.processed).toBe(3);
  });

  it('waits between attempts as the type’s backoff says: the initial delay, doubling with each retry', async () => {
    const j = await submit('synthetic', { chunks: 1, chunk_ms: 1, fail_attempts: 2 });
    const done = await until(j.id, 'COMPLETED', 30_000);
    expect(done.attempts).toBe(3);
    // From each failure (the status event back to PENDING) to the next attempt's start (back to RUNNING).
    const rows = await statusEvents(t.service.pool, j.id);
    expect(rows.map((r) => r.status)).toEqual(['RUNNING', 'PENDING', 'RUNNING', 'PENDING', 'RUNNING', 'COMPLETED']);
    const gaps = [2, 4].map((i) => Number(rows[i]?.at) - Number(rows[i - 1]?.at));
    const initialMs = DEFAULT_BACKOFF.initialSeconds * 1000;
    expect(gaps[0]).toBeGreaterThanOrEqual(initialMs);
    expect(gaps[1]).toBeGreaterThanOrEqual(2 * initialMs);
  });

  it('dead-letters a job that exhausts its attempts, lists it, and replays it from its checkpoint', async () => {
    const j = await submit('synthetic', { chunks: 3, chunk_ms: 1, fail_attempts: 3, fail_at_chunk: 2 });
    const failed = await until(j.id, 'FAILED', 30_000);
    expect(failed.attempts).toBe(3);
    expect(failed.error_history.map((e) => e.attempt)).toEqual([1, 2, 3]);
    const { rows: dead } = await t.service.pool.query(
      `SELECT data FROM pgboss.job WHERE name = $1 AND data->>'jobId' = $2`,
      [QUEUES.jobsDead, j.id],
    );
    expect(dead).toHaveLength(1);

    const list = (await (await t.api('/v1/dead-letters?kind=job')).json()) as {
      data: Array<{ kind: string; job: JobBody }>;
    };
    const entry = list.data.find((d) => d.job.id === j.id);
    expect(entry?.kind).toBe('job');
    expect(entry?.job.error_history).toHaveLength(3);

    expect((await t.api(`/v1/jobs/${j.id}/retry`, { method: 'POST', json: { from: 'sideways' } })).status).toBe(422);
    // The operator fixes the cause, then replays from the checkpoint (chunks 0 and 1 are kept).
    await t.service.pool.query(`UPDATE jobs SET input = input - 'fail_attempts' WHERE id = $1`, [j.id]);
    const res = await t.api(`/v1/jobs/${j.id}/retry`, { method: 'POST' });
    expect(res.status).toBe(202);
    const done = await until(j.id, 'COMPLETED');
    expect(done.result).toEqual({ chunks: 3 });
    // Replayed from the checkpoint: the kept chunks were not redone (their progress would count twice).
    expect(done.progress.processed).toBe(3);
    const { rows: gone } = await t.service.pool.query(
      `SELECT 1 FROM pgboss.job WHERE name = $1 AND data->>'jobId' = $2`,
      [QUEUES.jobsDead, j.id],
    );
    expect(gone).toHaveLength(0);
    expect((await t.api(`/v1/jobs/${j.id}/retry`, { method: 'POST' })).status).toBe(409);
  });

  it('fails at once on a permanent error, without retrying, and can replay from the start in bulk', async () => {
    const j = await submit('synthetic', { chunks: 2, chunk_ms: 1, fail_attempts: 1, permanent: true });
    const failed = await until(j.id, 'FAILED');
    expect(failed.attempts).toBe(1);
    expect(failed.error?.permanent).toBe(true);
    const { rows: dead } = await t.service.pool.query(
      `SELECT 1 FROM pgboss.job WHERE name = $1 AND data->>'jobId' = $2`,
      [QUEUES.jobsDead, j.id],
    );
    expect(dead).toHaveLength(1);

    const since = new Date(Date.now() - 60_000).toISOString();
    const res = await t.api('/v1/dead-letters/replay', {
      method: 'POST',
      json: { type: 'synthetic', since, from: 'start' },
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { job_ids: string[] };
    expect(body.job_ids).toContain(j.id);
    // attempt 1 of the replay fails permanently again (fail_attempts: 1): the replay ran from the start.
    const again = await until(j.id, 'FAILED');
    expect(again.error_history).toHaveLength(2);
  });

  it('fails and dead-letters a RUNNING job with no lease whose last execution meets no worker that knows its type', async () => {
    // A continuation or retry can reach workers without the type's module: once its last execution is
    // spent, the job must not stay PENDING, or RUNNING with no lease. As a job is after handing over at
    // the end of an execution budget: RUNNING, checkpointed, no lease.
    const now = new Date();
    const id = await insertJob(t.service.pool, t.tenant.id, {
      type: 'not-deployed-here',
      status: 'RUNNING',
      max_attempts: 1,
      attempts: 1,
      checkpoint_cursor: 3,
      checkpoint_state: {},
      checkpoint_at: now,
      started_at: now,
    });
    await withTransaction(t.service.pool, async (c) => {
      const next = await sendExecution(t.service.boss, c, {
        jobId: id,
        tenantId: t.tenant.id,
        retriesLeft: 0,
        attemptsUsed: 1,
        backoff: DEFAULT_BACKOFF,
        continuation: true,
      });
      await c.query('UPDATE jobs SET execution_id = $2 WHERE id = $1', [id, next]);
    });
    const failed = await waitFor('the job failed', async () => {
      const res = await t.api(`/v1/jobs/${id}`);
      const body = (await res.json()) as {
        status: string;
        error: { message: string } | null;
        error_history: unknown[];
      };
      return body.status === 'FAILED' ? body : undefined;
    });
    expect(failed.error?.message).toMatch(/unknown job type "not-deployed-here"/);
    expect(failed.error_history).toHaveLength(1);
    const list = (await (await t.api('/v1/dead-letters?kind=job')).json()) as { data: Array<{ job: { id: string } }> };
    expect(list.data.map((d) => d.job.id)).toContain(id);
  });

  it('cancels a running job: its signal fires, no later chunk commits, status CANCELLED', async () => {
    const j = await submit('synthetic', { chunks: 100, chunk_ms: 100 });
    await waitFor('progress', async () => (await job(j.id)).progress.processed >= 2);
    const res = await t.api(`/v1/jobs/${j.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(202);
    const cancelled = await until(j.id, 'CANCELLED', 5000);
    expect((await statusEvents(t.service.pool, j.id)).at(-1)?.status).toBe('CANCELLED');
    // The worker writes CANCELLED only once its chunk stopped and its checkpoints in flight settled; a
    // checkpoint's fence refuses a job that is no longer RUNNING. So the progress read at CANCELLED is the
    // last. Its execution was consumed by the claim: pg-boss holds nothing of the job to settle.
    const { rows } = await t.service.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND data->>'jobId' = $2`,
      [QUEUES.jobs, j.id],
    );
    expect(rows[0]?.n).toBe(0);
    expect((await job(j.id)).progress.processed).toBe(cancelled.progress.processed);
  });

  it('runs a job longer than the execution budget as a chain of executions', async () => {
    const j = await submit('synthetic', { chunks: 12, chunk_ms: 250 });
    // The executions that ran it, as its row names them while it runs.
    const executions = new Set<string>();
    await waitFor(`job ${j.id} COMPLETED`, async () => {
      const { rows } = await t.service.pool.query<{ status: string; execution_id: string | null }>(
        'SELECT status, execution_id FROM jobs WHERE id = $1',
        [j.id],
      );
      const row = rows[0];
      if (row?.execution_id) executions.add(row.execution_id);
      return row?.status === 'COMPLETED';
    });
    const done = await job(j.id);
    expect(done.result).toEqual({ chunks: 12 });
    expect(done.attempts).toBe(1);
    // The first and at least two that each took over at the end of the one before's budget.
    expect(executions.size).toBeGreaterThanOrEqual(3);
    // Each was consumed by its claim: pg-boss holds none of them.
    const { rows } = await t.service.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND data->>'jobId' = $2`,
      [QUEUES.jobs, j.id],
    );
    expect(rows[0]?.n).toBe(0);
    // Each execution went on from the last checkpoint: no chunk ran twice (its progress would count twice).
    expect(done.progress.processed).toBe(12);
  });

  it('keeps one tenant from taking every worker', async () => {
    const busy = await t.newTenant();
    const other = await t.newTenant();
    const jobs = await Promise.all(
      Array.from({ length: 6 }, () =>
        t.api('/v1/jobs', {
          method: 'POST',
          key: busy.api_key,
          json: { type: 'synthetic', input: { chunks: 4, chunk_ms: 150 } },
        }),
      ),
    );
    const ids = await Promise.all(jobs.map(async (r) => ((await r.json()) as { id: string }).id));
    const lone = (await (
      await t.api('/v1/jobs', {
        method: 'POST',
        key: other.api_key,
        json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } },
      })
    ).json()) as { id: string };
    let maxRunning = 0;
    let loneDoneWhileBusy = false;
    await waitFor(
      'busy tenant done',
      async () => {
        const { rows } = await t.service.pool.query<{ running: number; left: number }>(
          `SELECT count(*) FILTER (WHERE status = 'RUNNING')::int AS running, count(*) FILTER (WHERE status IN ('PENDING','RUNNING'))::int AS left FROM jobs WHERE id = ANY($1::uuid[])`,
          [ids],
        );
        const r = rows[0] ?? { running: 0, left: 0 };
        maxRunning = Math.max(maxRunning, r.running);
        if (r.left > 0 && (await job(lone.id, other.api_key)).status === 'COMPLETED') loneDoneWhileBusy = true;
        return r.left === 0;
      },
      30_000,
      20,
    );
    expect(maxRunning).toBeLessThanOrEqual(3);
    expect(loneDoneWhileBusy).toBe(true);
  });

  it('runs at most `concurrency` jobs of a type at once in one process', async () => {
    // The fixture records each chunk's run through its own pool, to the database in DATABASE_URL.
    process.env.DATABASE_URL = t.db.url;
    const tenants = await Promise.all([t.newTenant(), t.newTenant(), t.newTenant()]);
    const ids = await Promise.all(
      tenants.map(async (tenant) => {
        const res = await t.api('/v1/jobs', {
          method: 'POST',
          key: tenant.api_key,
          json: { type: 'single', input: { chunks: 2, chunk_ms: 120 } },
        });
        return ((await res.json()) as { id: string }).id;
      }),
    );
    // Chunks of different jobs never overlap in time: one job of the type ran at a time.
    expect(await singleRuns(ids)).toEqual({ overlaps: 0, runs: 6 });
  });

  it('holds a type’s concurrency for executions that take the locked claim, fetched together', async () => {
    // A bulk replay from the checkpoint of two dead-lettered jobs of the concurrency-1 type sends both
    // executions in one transaction; the worker fetches them together and both take the locked claim.
    process.env.DATABASE_URL = t.db.url;
    await t.service.pool.query(
      'CREATE TABLE IF NOT EXISTS chunk_runs (id bigserial PRIMARY KEY, job_id uuid, chunk int, pid int, started timestamptz, ended timestamptz)',
    );
    const ids = [randomUUID(), randomUUID()];
    for (const id of ids) {
      // A job that failed for good after its first checkpoint (as the worker leaves one).
      const now = new Date();
      await insertJob(t.service.pool, t.tenant.id, {
        id,
        type: 'single',
        status: 'FAILED',
        input: { chunks: 3, chunk_ms: 300 },
        max_attempts: 1,
        attempts: 1,
        total: 3,
        checkpoint_cursor: 0,
        checkpoint_state: { sum: 0 },
        checkpoint_at: now,
        dead_lettered_at: now,
        finished_at: now,
        error: { message: 'x' },
        error_history: [{ message: 'x' }],
        event_seq: 3,
      });
    }
    const res = await t.api('/v1/dead-letters/replay', {
      method: 'POST',
      json: { type: 'single', from: 'checkpoint' },
    });
    expect(res.status).toBe(202);
    expect(await singleRuns(ids)).toEqual({ overlaps: 0, runs: 6 });
  });

  it('raises a stall alert once for a running job without progress, and clears it when the job ends', async () => {
    const j = await submit('stalls', { ms: 2500 });
    const key = `job-stalled:${j.id}`;
    await waitFor(
      'stall alert',
      async () => {
        const { rows } = await t.service.pool.query('SELECT 1 FROM alerts WHERE key = $1 AND cleared_at IS NULL', [
          key,
        ]);
        return rows.length === 1;
      },
      10_000,
    );
    await until(j.id, 'COMPLETED');
    await waitFor(
      'stall alert cleared',
      async () => {
        const { rows } = await t.service.pool.query('SELECT 1 FROM alerts WHERE key = $1 AND cleared_at IS NOT NULL', [
          key,
        ]);
        return rows.length === 1;
      },
      10_000,
    );
    const metrics = await t.service.metrics.registry.getSingleMetricAsString('longhaul_alerts_raised_total');
    expect(metrics).toMatch(/longhaul_alerts_raised_total\{kind="job-stalled"\} 1/);
  });

  it('raises the pending alert when jobs wait too long, once, and clears it', async () => {
    const monitor = new WorkerMonitor({
      pool: t.service.pool,
      boss: t.service.boss,
      registry: t.service.registry,
      alerts: t.service.alerts,
      log: t.service.log,
      options: { intervalSeconds: 60, leaseSeconds: 2, pendingAlertSeconds: 30, maxLeaseLosses: 10 },
    });
    const id = await insertJob(t.service.pool, t.tenant.id, { max_attempts: 1, updated_at: secondsFromNow(-3600) });
    const seen: string[] = [];
    t.service.alerts.addSink({ name: 'test', send: async (e) => void seen.push(`${e.state}:${e.key}`) });
    await monitor.checkAlerts();
    await monitor.checkAlerts();
    expect(seen.filter((s) => s === 'raised:jobs-pending')).toHaveLength(1);
    await t.service.pool.query(`UPDATE jobs SET status = 'CANCELLED' WHERE id = $1`, [id]);
    await monitor.checkAlerts();
    expect(seen.filter((s) => s === 'cleared:jobs-pending')).toHaveLength(1);
  });
});
