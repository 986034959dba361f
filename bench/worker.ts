/**
 * Issue 3, the worker runtime: (a) pickup latency from POST /v1/jobs to the first chunk starting, on an
 * idle system; (b) the cost of one checkpoint commit with 8 jobs checkpointing at once, beside a plain
 * single-row UPDATE at the same concurrency; (c) tiny jobs end to end (accepted → COMPLETED) per second,
 * beside pg-boss's own work() draining no-op jobs on the same database in the same run.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { Pool as HttpPool } from 'undici';
import { announcement, JobEventsPublisher } from '../src/jobs/events-publisher.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { writeCheckpoint } from '../src/worker/store.ts';
import { percentile, type BenchModule, type BenchRow } from './harness.ts';
import { startChildService, timedLoops } from './support.ts';

const PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'probe.ts');
const PICKUP_SAMPLES = 80;
const CHECKPOINT_CLIENTS = 8;
const CHECKPOINT_SECONDS = 3;
const TINY_JOBS = 1000;
const TINY_CLIENTS = 16;
const WORKER_CONCURRENCY = 16;

const now = () => performance.timeOrigin + performance.now();

async function waitUntil(fn: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

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
  // As the worker does: the commit is timed, its announcement follows on the publisher.
  const events = new JobEventsPublisher(pool, createLogger('warn'));
  let n = 0;
  const cp = async (i: number) => {
    const j = jobs[i];
    if (j === undefined) return;
    const seq = await writeCheckpoint(pool, { jobId: j.id, token: j.token, cursor: n++, state, processed: 1, leaseSeconds: 30 });
    if (seq === undefined) throw new Error('checkpoint refused');
    events.publish(announcement(j.id, seq));
  };
  const plain = async (i: number) => void (await pool.query('UPDATE bench_plain SET v = $2 WHERE id = $1', [i, JSON.stringify(state)]));
  await timedLoops(CHECKPOINT_CLIENTS, 0.5, cp);
  await pool.query('ANALYZE jobs; ANALYZE job_events; ANALYZE bench_plain');
  const c = await timedLoops(CHECKPOINT_CLIENTS, CHECKPOINT_SECONDS, cp);
  await events.flush();
  const p = await timedLoops(CHECKPOINT_CLIENTS, CHECKPOINT_SECONDS, plain);
  const p50 = percentile(c.latencies, 50);
  return [
    {
      name: `checkpoint commit p50 (${CHECKPOINT_CLIENTS} jobs at once)`,
      value: p50,
      unit: 'ms',
      baselineName: 'plain 1-row UPDATE p50',
      baseline: percentile(p.latencies, 50),
      target: 'p50 ≤ 2 ms',
      met: p50 <= 2,
    },
    { name: `checkpoint commit p99 (${CHECKPOINT_CLIENTS} jobs at once)`, value: percentile(c.latencies, 99), unit: 'ms', baselineName: 'plain 1-row UPDATE p99', baseline: percentile(p.latencies, 99) },
  ];
}

async function pgBossDrain(url: string): Promise<number> {
  const boss = new PgBoss({ connectionString: url, max: 10, supervise: false, schedule: false });
  await boss.start();
  const q = 'bench-baseline';
  await boss.createQueue(q);
  await boss.insert(q, Array.from({ length: TINY_JOBS }, (_, i) => ({ data: { i } })));
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  await pool.query('ANALYZE pgboss.job');
  await pool.end();
  let done = 0;
  const t0 = now();
  await boss.work(q, { batchSize: WORKER_CONCURRENCY, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    done += jobs.length;
  });
  await waitUntil(async () => done >= TINY_JOBS, 120_000);
  const rate = TINY_JOBS / ((now() - t0) / 1000);
  await boss.stop({ graceful: false });
  return rate;
}

export const workerBench: BenchModule = {
  title: 'worker runtime: pickup latency, checkpoint cost, tiny-job throughput',
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: CHECKPOINT_CLIENTS + 2 });
    const rows: BenchRow[] = [];
    try {
      const tenant = await createTenant(pool, 'bench');
      rows.push(...(await checkpointRows(pool, tenant.id)));

      const svc = await startChildService('start', {
        DATABASE_URL: db.url,
        LONGHAUL_JOB_TYPES: PROBE,
        LONGHAUL_WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
        LONGHAUL_TENANT_CONCURRENCY: String(WORKER_CONCURRENCY),
        LONGHAUL_PG_POOL_MAX: '30',
      });
      const http = new HttpPool(svc.url, { connections: TINY_CLIENTS, pipelining: 1 });
      const post = async (body: string): Promise<{ id: string; sent: number }> => {
        const sent = now();
        const res = await http.request({ path: '/v1/jobs', method: 'POST', headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' }, body });
        const json = (await res.body.json()) as { id: string };
        if (res.statusCode !== 202) throw new Error(`POST answered ${res.statusCode}`);
        return { id: json.id, sent };
      };
      try {
        // (a) pickup: one job at a time on an idle system.
        const probeBody = JSON.stringify({ type: 'probe', input: {} });
        const pickups: number[] = [];
        for (let i = 0; i < PICKUP_SAMPLES + 5; i++) {
          const { id, sent } = await post(probeBody);
          let at = 0;
          await waitUntil(async () => {
            const { rows: r } = await pool.query<{ at: number | null }>(`SELECT (result->>'first_chunk_at')::float8 AS at FROM jobs WHERE id = $1 AND status = 'COMPLETED'`, [id]);
            at = r[0]?.at ?? 0;
            return at > 0;
          }, 10_000);
          if (i >= 5) pickups.push(at - sent);
          if (i === 4) await pool.query('ANALYZE');
        }
        const p50 = percentile(pickups, 50);
        const p99 = percentile(pickups, 99);
        rows.push(
          { name: 'pickup POST → first chunk started p50 (idle)', value: p50, unit: 'ms', target: 'p50 ≤ 10 ms', met: p50 <= 10 },
          { name: 'pickup POST → first chunk started p99 (idle)', value: p99, unit: 'ms', target: 'p99 ≤ 25 ms', met: p99 <= 25 },
        );

        // (c) tiny jobs: TINY_JOBS submitted by 16 clients, from the first POST to the last COMPLETED.
        const tinyBody = JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });
        const t0 = now();
        let next = 0;
        const ids: string[] = [];
        await Promise.all(
          Array.from({ length: TINY_CLIENTS }, async () => {
            while (next < TINY_JOBS) {
              next++;
              ids.push((await post(tinyBody)).id);
            }
          }),
        );
        await waitUntil(async () => {
          const { rows: r } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'COMPLETED'`, [ids]);
          return (r[0]?.n ?? 0) >= TINY_JOBS;
        }, 180_000);
        const ours = TINY_JOBS / ((now() - t0) / 1000);
        const baseline = await pgBossDrain(db.url);
        rows.push({
          name: `tiny jobs accepted → COMPLETED/s (${TINY_JOBS} jobs, ${TINY_CLIENTS} clients)`,
          value: ours,
          unit: 'jobs/s',
          baselineName: `pg-boss work() no-op drain/s (batch ${WORKER_CONCURRENCY})`,
          baseline,
          target: 'ratio ≥ 0.5',
          met: ours / baseline >= 0.5,
        });
      } finally {
        await http.close();
        await svc.stop();
      }
      return rows;
    } finally {
      await pool.end();
      await db.drop();
    }
  },
};
