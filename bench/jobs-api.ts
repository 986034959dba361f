/**
 * Issue 2: jobs accepted per second through POST /v1/jobs (auth + Idempotency-Key + transactional
 * insert + enqueue) at 16 concurrent clients, against raw single-row INSERTs into a plain table with a
 * jsonb column at 16 connections, on the same database in the same run. Also the POST's p50/p99.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule } from './harness.ts';
import { cpuBetween, postgresCpu, processCpuSeconds, startChildService, timedLoops } from './support.ts';

const CLIENTS = 16;
const SECONDS = 5;
const WARMUP_SECONDS = 1;
const BODY = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 }, metadata: { source: 'bench' } };

export const jobsApiBench: BenchModule = {
  title: 'jobs API: POST /v1/jobs vs raw INSERT',
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: CLIENTS });
    try {
      // Baseline: single-row INSERTs of the same payload, 16 connections.
      await pool.query('CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)');
      const payload = JSON.stringify(BODY);
      await timedLoops(CLIENTS, WARMUP_SECONDS, async () => void (await pool.query('INSERT INTO bench_raw (payload) VALUES ($1)', [payload])));
      const rawPg0 = await postgresCpu(pool);
      const raw = await timedLoops(CLIENTS, SECONDS, async () => void (await pool.query('INSERT INTO bench_raw (payload) VALUES ($1)', [payload])));
      const rawPg1 = await postgresCpu(pool);

      const tenant = await createTenant(pool, 'bench');
      const svc = await startChildService('api', { DATABASE_URL: db.url, LONGHAUL_LOG_LEVEL: 'warn', LONGHAUL_PG_POOL_MAX: '20' });
      const http = new HttpPool(svc.url, { connections: CLIENTS, pipelining: 1 });
      const body = JSON.stringify(BODY);
      let errors = 0;
      const post = async () => {
        const res = await http.request({
          path: '/v1/jobs',
          method: 'POST',
          headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
          body,
        });
        await res.body.dump();
        if (res.statusCode !== 202) errors++;
      };
      try {
        await timedLoops(CLIENTS, WARMUP_SECONDS, post);
        await pool.query('ANALYZE');
        const cpu0 = processCpuSeconds(svc.child.pid);
        const pg0 = await postgresCpu(pool);
        const api = await timedLoops(CLIENTS, SECONDS, post);
        const cpu1 = processCpuSeconds(svc.child.pid);
        const pg1 = await postgresCpu(pool);
        const pgApi = cpuBetween(pg0, pg1);
        const pgRaw = cpuBetween(rawPg0, rawPg1);
        if (errors > 0) ctx.log(`${errors} POSTs did not answer 202`);
        const ratio = api.perSecond / raw.perSecond;
        return [
          {
            name: `POST /v1/jobs accepted/s (${CLIENTS} clients)`,
            value: api.perSecond,
            unit: 'jobs/s',
            baselineName: `raw INSERT/s (${CLIENTS} conns)`,
            baseline: raw.perSecond,
            target: 'ratio ≥ 0.6',
            met: ratio >= 0.6,
          },
          { name: 'POST /v1/jobs latency p50', value: percentile(api.latencies, 50), unit: 'ms', baselineName: 'raw INSERT p50', baseline: percentile(raw.latencies, 50) },
          { name: 'POST /v1/jobs latency p99', value: percentile(api.latencies, 99), unit: 'ms', baselineName: 'raw INSERT p99', baseline: percentile(raw.latencies, 99) },
          // Where the time goes (Linux, local server only): the service's own CPU per accepted job, and Postgres's.
          ...(cpu0 === undefined || cpu1 === undefined ? [] : [{ name: 'service CPU per accepted job', value: ((cpu1 - cpu0) * 1e6) / api.count, unit: 'µs' }]),
          ...(pgApi === undefined || pgRaw === undefined
            ? []
            : [
                {
                  name: 'Postgres CPU per accepted job',
                  value: (pgApi * 1e6) / api.count,
                  unit: 'µs',
                  baselineName: 'Postgres CPU per raw INSERT',
                  baseline: (pgRaw * 1e6) / raw.count,
                },
              ]),
        ];
      } finally {
        await http.close();
        await svc.stop();
      }
    } finally {
      await pool.end();
      await db.drop();
    }
  },
};
