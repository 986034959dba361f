/**
 * Issue 16: jobs accepted per second through POST /v1/jobs/batch (batches of 500 from 4 clients, each
 * batch one transaction) against raw single-row INSERTs of the same payload on the same database in the
 * same run; and the pickup of delayed jobs, from each job's scheduled_for to its start (the claim that
 * runs start() and commits its first checkpoint, just before the first chunk), on an otherwise idle
 * `longhaul start`.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule } from './harness.ts';
import { startChildService, timedLoops } from './support.ts';

const BATCH = 500;
const CLIENTS = 4;
const RAW_CONNECTIONS = 16;
const SECONDS = 5;
const WARMUP_SECONDS = 1;
const JOB = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 }, metadata: { source: 'bench' } };
/** Delayed jobs measured, and the gap between their start times (so that each finds the worker idle). */
const DELAYED = 40;
const DELAY_GAP_MS = 150;

export const schedulingBench: BenchModule = {
  title: 'scheduling: POST /v1/jobs/batch vs raw INSERT, delayed pickup',
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: RAW_CONNECTIONS });
    try {
      await pool.query('CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)');
      const payload = JSON.stringify(JOB);
      const insert = async () => void (await pool.query('INSERT INTO bench_raw (payload) VALUES ($1)', [payload]));
      await timedLoops(RAW_CONNECTIONS, WARMUP_SECONDS, insert);
      const raw = await timedLoops(RAW_CONNECTIONS, SECONDS, insert);

      const tenant = await createTenant(pool, 'bench');
      const auth = { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' };
      const api = await startChildService('api', { DATABASE_URL: db.url, LONGHAUL_PG_POOL_MAX: '20' });
      const http = new HttpPool(api.url, { connections: CLIENTS, pipelining: 1 });
      let batch: Awaited<ReturnType<typeof timedLoops>>;
      let errors = 0;
      try {
        const post = async () => {
          const jobs = Array.from({ length: BATCH }, () => ({ ...JOB, idempotency_key: randomUUID() }));
          const res = await http.request({
            path: '/v1/jobs/batch',
            method: 'POST',
            headers: auth,
            body: JSON.stringify({ jobs }),
          });
          await res.body.dump();
          if (res.statusCode !== 202) errors++;
        };
        await timedLoops(CLIENTS, WARMUP_SECONDS, post);
        await pool.query('ANALYZE');
        batch = await timedLoops(CLIENTS, SECONDS, post);
      } finally {
        await http.close();
        await api.stop();
      }
      if (errors > 0) ctx.log(`${errors} batches did not answer 202`);
      const batchRate = batch.perSecond * BATCH;

      // Delayed pickup, on a fresh database so that the batch backlog is not in the way.
      const pickupDb = await ctx.createDatabase();
      const pickupPool = new pg.Pool({ connectionString: pickupDb.url, max: 4 });
      const svc = await startChildService('start', { DATABASE_URL: pickupDb.url, LONGHAUL_PG_POOL_MAX: '20' });
      let pickups: number[];
      try {
        const t2 = await createTenant(pickupPool, 'bench');
        const first = Date.now() + 3000;
        const ids: string[] = [];
        for (let i = 0; i < DELAYED; i++) {
          const res = await fetch(`${svc.url}/v1/jobs`, {
            method: 'POST',
            headers: { authorization: `Bearer ${t2.api_key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ ...JOB, run_at: new Date(first + i * DELAY_GAP_MS).toISOString() }),
          });
          ids.push(((await res.json()) as { id: string }).id);
        }
        const deadline = first + DELAYED * DELAY_GAP_MS + 30_000;
        for (;;) {
          const { rows } = await pickupPool.query<{ ms: number | null }>(
            `SELECT extract(epoch FROM started_at - scheduled_for) * 1000 AS ms FROM jobs WHERE id = ANY($1::uuid[])`,
            [ids],
          );
          if (rows.every((r) => r.ms !== null) || Date.now() > deadline) {
            pickups = rows.flatMap((r) => (r.ms === null ? [] : [r.ms]));
            break;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
        if (pickups.length < DELAYED) ctx.log(`${DELAYED - pickups.length} delayed jobs had not started`);
      } finally {
        await svc.stop();
        await pickupPool.end();
        await pickupDb.drop();
      }
      const ratio = batchRate / raw.perSecond;
      const p99 = percentile(pickups, 99);
      return [
        {
          name: `POST /v1/jobs/batch accepted/s (batches of ${BATCH}, ${CLIENTS} clients)`,
          value: batchRate,
          unit: 'jobs/s',
          baselineName: `raw INSERT/s (${RAW_CONNECTIONS} conns)`,
          baseline: raw.perSecond,
          target: 'ratio ≥ 2',
          met: ratio >= 2,
        },
        {
          name: `POST /v1/jobs/batch latency p50 (${BATCH} jobs)`,
          value: percentile(batch.latencies, 50),
          unit: 'ms',
        },
        {
          name: `delayed pickup p50, scheduled_for → start (${DELAYED} jobs)`,
          value: percentile(pickups, 50),
          unit: 'ms',
        },
        {
          name: `delayed pickup p99, scheduled_for → start (${DELAYED} jobs)`,
          value: p99,
          unit: 'ms',
          target: 'p99 ≤ 1000 ms',
          met: p99 <= 1000,
        },
      ];
    } finally {
      await pool.end();
      await db.drop();
    }
  },
};
