/**
 * Issue 2: jobs accepted per second through POST /v1/jobs (auth + Idempotency-Key + transactional
 * insert + enqueue) at 16 concurrent clients, against raw single-row INSERTs into a plain table with a
 * jsonb column at 16 connections, on the same database in the same run. Also the POST's p50/p99, and,
 * for scale, pg-boss's own send() of one job per call from 16 callers (the issue reckons it at about a
 * third of raw INSERTs) and the same POSTs answered by a bare node:http server that does nothing else.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { Pool as HttpPool } from 'undici';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule } from './harness.ts';
import { cpuBetween, freePort, postgresCpu, processCpuSeconds, startChildService, timedLoops } from './support.ts';

const CLIENTS = 16;
const SECONDS = 5;
const WARMUP_SECONDS = 1;
const BODY = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 }, metadata: { source: 'bench' } };

/** pg-boss's own send(), one job per call from CLIENTS callers, per second (a queue with default options). */
async function bossSends(url: string): Promise<number> {
  const boss = new PgBoss({ connectionString: url, max: CLIENTS, supervise: false, schedule: false });
  await boss.start();
  try {
    await boss.createQueue('bench-send');
    const send = async () => void (await boss.send('bench-send', BODY));
    await timedLoops(CLIENTS, WARMUP_SECONDS, send);
    return (await timedLoops(CLIENTS, SECONDS, send)).perSecond;
  } finally {
    await boss.stop({ graceful: false });
  }
}

/**
 * A node:http server in a process of its own that reads each POST's JSON body and answers 202 with a
 * job-sized JSON body, and nothing else: what HTTP alone allows on this machine with this load generator.
 */
async function bareHttpServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const job = JSON.stringify({
    id: randomUUID(),
    type: BODY.type,
    status: 'PENDING',
    input: BODY.input,
    metadata: BODY.metadata,
    created_at: new Date().toISOString(),
  });
  const code = `require('node:http').createServer((req, res) => {
    const parts = []; req.on('data', (c) => parts.push(c));
    req.on('end', () => { JSON.parse(Buffer.concat(parts).toString()); res.writeHead(202, { 'content-type': 'application/json', location: '/v1/jobs/x' }); res.end(${JSON.stringify(job)}); });
  }).listen(${port}, '127.0.0.1', () => process.stdout.write('ready'));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (child.stdout === null) throw new Error('no stdout');
  await once(child.stdout, 'data');
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill();
      await once(child, 'exit');
    },
  };
}

export const jobsApiBench: BenchModule = {
  title: 'jobs API: POST /v1/jobs vs raw INSERT',
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: CLIENTS });
    try {
      // Baseline: single-row INSERTs of the same payload, 16 connections.
      await pool.query('CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)');
      const payload = JSON.stringify(BODY);
      await timedLoops(
        CLIENTS,
        WARMUP_SECONDS,
        async () => void (await pool.query('INSERT INTO bench_raw (payload) VALUES ($1)', [payload])),
      );
      const rawPg0 = await postgresCpu(pool);
      const raw = await timedLoops(
        CLIENTS,
        SECONDS,
        async () => void (await pool.query('INSERT INTO bench_raw (payload) VALUES ($1)', [payload])),
      );
      const rawPg1 = await postgresCpu(pool);
      const sends = await bossSends(db.url);

      const tenant = await createTenant(pool, 'bench');
      const svc = await startChildService('api', {
        DATABASE_URL: db.url,
        LONGHAUL_LOG_LEVEL: 'warn',
        LONGHAUL_PG_POOL_MAX: '20',
      });
      const http = new HttpPool(svc.url, { connections: CLIENTS, pipelining: 1 });
      const body = JSON.stringify(BODY);
      let errors = 0;
      const postTo = (to: HttpPool) => async () => {
        const res = await to.request({
          path: '/v1/jobs',
          method: 'POST',
          headers: {
            authorization: `Bearer ${tenant.api_key}`,
            'content-type': 'application/json',
            'idempotency-key': randomUUID(),
          },
          body,
        });
        await res.body.dump();
        if (res.statusCode !== 202) errors++;
      };
      const post = postTo(http);
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
        const bare = await bareHttpServer();
        const bareHttp = new HttpPool(bare.url, { connections: CLIENTS, pipelining: 1 });
        let bareRate: number;
        try {
          await timedLoops(CLIENTS, WARMUP_SECONDS, postTo(bareHttp));
          bareRate = (await timedLoops(CLIENTS, SECONDS, postTo(bareHttp))).perSecond;
        } finally {
          await bareHttp.close();
          await bare.stop();
        }
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
          {
            name: `pg-boss send()/s alone, one job per call (${CLIENTS} callers)`,
            value: sends,
            unit: 'jobs/s',
            baselineName: `raw INSERT/s (${CLIENTS} conns)`,
            baseline: raw.perSecond,
          },
          {
            name: `POST /v1/jobs accepted/s, as above`,
            value: api.perSecond,
            unit: 'jobs/s',
            baselineName: 'pg-boss send()/s alone, as above',
            baseline: sends,
          },
          {
            name: `bare node:http 202 answers/s, no database (${CLIENTS} clients)`,
            value: bareRate,
            unit: 'req/s',
            baselineName: `raw INSERT/s (${CLIENTS} conns)`,
            baseline: raw.perSecond,
          },
          {
            name: 'POST /v1/jobs latency p50',
            value: percentile(api.latencies, 50),
            unit: 'ms',
            baselineName: 'raw INSERT p50',
            baseline: percentile(raw.latencies, 50),
          },
          {
            name: 'POST /v1/jobs latency p99',
            value: percentile(api.latencies, 99),
            unit: 'ms',
            baselineName: 'raw INSERT p99',
            baseline: percentile(raw.latencies, 99),
          },
          // Where the time goes (Linux, local server only): the service's own CPU per accepted job, and Postgres's.
          ...(cpu0 === undefined || cpu1 === undefined
            ? []
            : [{ name: 'service CPU per accepted job', value: ((cpu1 - cpu0) * 1e6) / api.count, unit: 'µs' }]),
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
