/**
 * Issue 3, the worker runtime: (a) pickup latency from a job's 202 (accepted) to its first chunk
 * starting, on an idle system; (b) the cost of one checkpoint commit with 8 jobs checkpointing at once,
 * beside a plain single-row UPDATE at the same concurrency; (c) tiny jobs accepted → COMPLETED per
 * second, a backlog drained by 16 slots, beside pg-boss's own work() (batch 16) draining no-op jobs on
 * the same database in the same run.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { loadConfig } from '../src/config.ts';
import { JobEventsPublisher } from '../src/jobs/events-publisher.ts';
import { QUEUES, queueOptions } from '../src/jobs/queues.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { writeCheckpoint, type CheckpointWrite } from '../src/jobs/lifecycle.ts';
import { checkpointGroup } from '../src/worker/checkpoint-group.ts';
import { percentile, type BenchModule, type BenchRow } from './harness.ts';
import { jobPoster, now, PROBE_BODY, PROBE_TYPES, probeStartedAt, waitUntil } from './pickup.ts';
import { startChildService, timedLoops } from './support.ts';

const PICKUP_SAMPLES = 80;
/** Pickups not counted (connections, plans and caches warm up), followed by ANALYZE. */
const PICKUP_WARMUP = 5;
/** Completion polling while the worker drains (each poll is a query the workers compete with). */
const COMPLETION_POLL_MS = 50;
const CHECKPOINT_CLIENTS = 8;
const CHECKPOINT_SECONDS = 3;
/** Tiny jobs per drain: enough that pg-boss's first fetches and plans do not weigh in its baseline (bench/RESULTS.md). */
const TINY_JOBS = 3000;
const TINY_CLIENTS = 16;
const WORKER_CONCURRENCY = 16;

async function checkpointRows(pool: pg.Pool, tenantId: string): Promise<BenchRow[]> {
  const jobs = Array.from({ length: CHECKPOINT_CLIENTS }, () => ({ id: randomUUID(), token: randomUUID() }));
  for (const j of jobs) {
    await pool.query(
      `INSERT INTO jobs (id, tenant_id, type, status, input, max_attempts, lease_token, lease_expires_at)
       VALUES ($1, $2, 'synthetic', 'RUNNING', '{}', 3, $3, now() + interval '1 hour')`,
      [j.id, tenantId, j.token],
    );
  }
  await pool.query('CREATE TABLE bench_plain (id int PRIMARY KEY, v jsonb)');
  await pool.query(`INSERT INTO bench_plain SELECT g, '{}' FROM generate_series(0, ${CHECKPOINT_CLIENTS - 1}) g`);
  const state = { cursor: 0, rows: 12345, sums: { a: 1, b: 2 } };
  // As the worker does: the commit is timed, its announcement follows on the publisher. A step that
  // wrote nothing through ctx.db checkpoints through the group commit (cp); one that did commits its
  // own transaction with a single-job checkpoint (alone).
  const events = new JobEventsPublisher(pool, createLogger('warn'));
  const group = checkpointGroup(() => pool);
  let n = 0;
  const checkpoint = (write: (w: CheckpointWrite) => Promise<number | undefined>) => async (i: number) => {
    const j = jobs[i];
    if (j === undefined) return;
    const seq = await write({ jobId: j.id, token: j.token, cursor: n++, state, processed: 1, leaseSeconds: 30 });
    if (seq === undefined) throw new Error('checkpoint refused');
    events.publish(j.id, seq);
  };
  const cp = checkpoint((w) => group.submit(w));
  const alone = checkpoint((w) => writeCheckpoint(pool, w));
  const plain = async (i: number) =>
    void (await pool.query('UPDATE bench_plain SET v = $2 WHERE id = $1', [i, JSON.stringify(state)]));
  await timedLoops(CHECKPOINT_CLIENTS, 0.5, cp);
  await pool.query('ANALYZE jobs; ANALYZE job_events; ANALYZE bench_plain');
  const c = await timedLoops(CHECKPOINT_CLIENTS, CHECKPOINT_SECONDS, cp);
  const a = await timedLoops(CHECKPOINT_CLIENTS, CHECKPOINT_SECONDS, alone);
  await events.flush();
  const p = await timedLoops(CHECKPOINT_CLIENTS, CHECKPOINT_SECONDS, plain);
  const p50 = percentile(c.latencies, 50);
  return [
    {
      name: `checkpoint commit p50 (${CHECKPOINT_CLIENTS} jobs at once, group-committed)`,
      value: p50,
      unit: 'ms',
      baselineName: 'plain 1-row UPDATE p50',
      baseline: percentile(p.latencies, 50),
      target: 'p50 ≤ 2 ms',
      met: p50 <= 2,
    },
    {
      name: `checkpoint commit p99 (${CHECKPOINT_CLIENTS} jobs at once, group-committed)`,
      value: percentile(c.latencies, 99),
      unit: 'ms',
      baselineName: 'plain 1-row UPDATE p99',
      baseline: percentile(p.latencies, 99),
    },
    {
      name: `checkpoint commit p50 (${CHECKPOINT_CLIENTS} at once, each alone: step wrote through ctx.db)`,
      value: percentile(a.latencies, 50),
      unit: 'ms',
      baselineName: 'plain 1-row UPDATE p50',
      baseline: percentile(p.latencies, 50),
    },
  ];
}

/**
 * pg-boss's own work() draining TINY_JOBS no-op jobs on queue `q`: `plain` with pg-boss's default
 * queue options (the baseline), or `longhaul` with the options our executions queue runs with (heartbeat,
 * dead letter, notify, expiry: src/jobs/queues.ts), the jobs in one tenant group fetched under the same
 * group limit and with the metadata our worker fetches: what pg-boss alone costs in longhaul's settings.
 */
async function pgBossDrain(url: string, q: string, settings: 'plain' | 'longhaul'): Promise<number> {
  const boss = new PgBoss({ connectionString: url, max: 10, supervise: false, schedule: false });
  await boss.start();
  const longhaul = settings === 'longhaul';
  if (longhaul) {
    // The worker's defaults (the bench's service runs with them).
    const opts = queueOptions(loadConfig({}).worker);
    await boss.createQueue(`${q}-dead`, opts[QUEUES.jobsDead]);
    await boss.createQueue(q, { ...opts[QUEUES.jobs], deadLetter: `${q}-dead` });
  } else await boss.createQueue(q);
  const group = { id: randomUUID() };
  await boss.insert(
    q,
    Array.from({ length: TINY_JOBS }, (_, i) => ({ data: { jobId: randomUUID(), i }, ...(longhaul ? { group } : {}) })),
  );
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  await pool.query('ANALYZE pgboss.job');
  await pool.end();
  let done = 0;
  const t0 = now();
  const options = { batchSize: WORKER_CONCURRENCY, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 };
  const handler = async (jobs: unknown[]) => {
    done += jobs.length;
  };
  if (longhaul)
    await boss.work(q, { ...options, includeMetadata: true, groupConcurrency: WORKER_CONCURRENCY }, handler);
  else await boss.work(q, options, handler);
  await waitUntil(async () => done >= TINY_JOBS, 120_000);
  const rate = TINY_JOBS / ((now() - t0) / 1000);
  await boss.stop({ graceful: false });
  return rate;
}

/** Submits `n` jobs from TINY_CLIENTS clients. */
async function submitMany(post: (body: string) => Promise<{ id: string }>, body: string, n: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: TINY_CLIENTS }, async () => {
      while (next < n) {
        next++;
        await post(body);
      }
    }),
  );
}

/** Waits until `n` jobs are COMPLETED, polling a cheap count at a pace that leaves the database to the workers. */
async function waitCompleted(pool: pg.Pool, n: number): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE status = 'COMPLETED'`);
    if ((rows[0]?.n ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((r) => setTimeout(r, COMPLETION_POLL_MS));
  }
}

export const workerBench: BenchModule = {
  title: 'worker runtime: pickup latency, checkpoint cost, tiny-job throughput',
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: CHECKPOINT_CLIENTS + 2 });
    const rows: BenchRow[] = [];
    const env = {
      DATABASE_URL: db.url,
      LONGHAUL_JOB_TYPES: PROBE_TYPES,
      LONGHAUL_WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
      LONGHAUL_TENANT_CONCURRENCY: String(WORKER_CONCURRENCY),
      LONGHAUL_PG_POOL_MAX: '30',
    };
    try {
      const tenant = await createTenant(pool, 'bench');
      rows.push(...(await checkpointRows(pool, tenant.id)));
      const tinyBody = JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });

      // (c) tiny jobs: TINY_JOBS accepted by an API-only process (a backlog, as pg-boss's baseline
      // drains one), then drained by a worker: from its first claim to the last COMPLETED (database clock).
      const api = await startChildService('api', env);
      const apiPost = jobPoster(api.url, tenant.api_key, TINY_CLIENTS);
      try {
        await submitMany(apiPost.post, tinyBody, TINY_JOBS);
      } finally {
        await apiPost.close();
        await api.stop();
      }
      await pool.query('ANALYZE');
      // The baseline runs just before and just after ours and the better figure counts: the machine's
      // load drifts, and this way the drift cannot favour us.
      const baselineBefore = await pgBossDrain(db.url, 'bench-baseline-1', 'plain');
      const svc = await startChildService('start', env);
      const { post, close } = jobPoster(svc.url, tenant.api_key, TINY_CLIENTS);
      try {
        await waitCompleted(pool, TINY_JOBS);
        const { rows: span } = await pool.query<{ s: number }>(
          `SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 AS s FROM jobs`,
        );
        const ours = TINY_JOBS / (span[0]?.s ?? Number.NaN);
        const baseline = Math.max(baselineBefore, await pgBossDrain(db.url, 'bench-baseline-2', 'plain'));
        const bossAlone = await pgBossDrain(db.url, 'bench-longhaul-settings', 'longhaul');
        ctx.log(`pg-boss work() drains: ${baselineBefore.toFixed(0)}/s before, ${baseline.toFixed(0)}/s best`);
        rows.push({
          name: `tiny jobs accepted → COMPLETED/s (backlog of ${TINY_JOBS}, ${WORKER_CONCURRENCY} slots)`,
          value: ours,
          unit: 'jobs/s',
          baselineName: `pg-boss work() no-op drain/s (batch ${WORKER_CONCURRENCY}, best of 2)`,
          baseline,
          target: 'ratio ≥ 0.5',
          met: ours / baseline >= 0.5,
        });
        // For scale: pg-boss's share of our drain (its fetch and complete, in our queue settings) alone.
        rows.push({
          name: `pg-boss work() no-op drain/s in longhaul's queue settings (group limit ${WORKER_CONCURRENCY}, heartbeat, dead letter, metadata)`,
          value: bossAlone,
          unit: 'jobs/s',
          baselineName: `pg-boss work() no-op drain/s (batch ${WORKER_CONCURRENCY}, best of 2)`,
          baseline,
        });

        // (a) pickup: one job at a time on an idle system, from its 202 to its first chunk starting.
        const fromAccepted: number[] = [];
        const fromSent: number[] = [];
        for (let i = 0; i < PICKUP_SAMPLES + PICKUP_WARMUP; i++) {
          const { id, sent, accepted } = await post(PROBE_BODY);
          const at = await probeStartedAt(pool, id, 10_000);
          if (i >= PICKUP_WARMUP) {
            // A chunk may start before the 202 reaches the client: the job was accepted at its commit, before both.
            fromAccepted.push(Math.max(0, at - accepted));
            fromSent.push(at - sent);
          }
          if (i === PICKUP_WARMUP - 1) await pool.query('ANALYZE');
        }
        const p50 = percentile(fromAccepted, 50);
        const p99 = percentile(fromAccepted, 99);
        rows.push(
          {
            name: 'pickup 202 accepted → first chunk started p50 (idle)',
            value: p50,
            unit: 'ms',
            target: 'p50 ≤ 10 ms',
            met: p50 <= 10,
          },
          {
            name: 'pickup 202 accepted → first chunk started p99 (idle)',
            value: p99,
            unit: 'ms',
            target: 'p99 ≤ 25 ms',
            met: p99 <= 25,
          },
          {
            name: 'pickup POST sent → first chunk started p50 (idle, with the POST)',
            value: percentile(fromSent, 50),
            unit: 'ms',
          },
        );

        // For comparison: the same tiny jobs submitted by 16 clients while the worker runs, first POST → last COMPLETED
        // (bounded by POST /v1/jobs as much as by the worker).
        const before = TINY_JOBS + PICKUP_SAMPLES + PICKUP_WARMUP;
        const t0 = now();
        await submitMany(post, tinyBody, TINY_JOBS);
        await waitCompleted(pool, before + TINY_JOBS);
        rows.push({
          name: `tiny jobs submitted and run at once, first POST → last COMPLETED/s (${TINY_CLIENTS} clients)`,
          value: TINY_JOBS / ((now() - t0) / 1000),
          unit: 'jobs/s',
        });
      } finally {
        await close();
        await svc.stop();
      }
      return rows;
    } finally {
      await pool.end();
      await db.drop();
    }
  },
};
