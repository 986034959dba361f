/**
 * Issue 17: (a) tiny jobs end to end and POST accepted/s with tracing on (spans exported to a local
 * OTLP/HTTP receiver, which decodes them and checks that none is missing) beside the same with tracing
 * off, in the same run; (b) a /metrics scrape with 1,000,000 jobs in the table beside the same scrape on
 * an empty one; (c) tiny jobs drained by 1, 2 and 4 longhaul processes on one Postgres, beside one
 * process (the figures of docs/scaling.md).
 */
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { createTenant } from '../src/tenants/repository.ts';
import { startCollector } from '../test/support/collector.ts';
import { percentile, type BenchModule, type BenchRow } from './harness.ts';
import { startChildService, type ChildService } from './support.ts';

/**
 * Which parts run (BENCH_OBSERVABILITY_PARTS, a comma list of `tracing`, `metrics`, `scaling`; all by
 * default), and how many jobs the scrape row seeds (BENCH_OBSERVABILITY_SEEDED): a busy machine can
 * run one part, or a smaller table.
 */
const PARTS = new Set((process.env.BENCH_OBSERVABILITY_PARTS ?? 'tracing,metrics,scaling').split(','));
/** Jobs per end-to-end run, and the clients posting them. */
const TINY_JOBS = 1500;
const CLIENTS = 16;
const CONCURRENCY = 16;
/** Seeded jobs for the scrape row, written by one INSERT … SELECT per slice. */
const SEEDED = Number(process.env.BENCH_OBSERVABILITY_SEEDED ?? 1_000_000);
const SEED_SLICE = 250_000;
const SCRAPES = 200;
const SCALE_JOBS = 3000;

/** Spans of a tiny job without a webhook: the POST, the wait in the queue, the execution, the completion. */
const SPANS_PER_JOB = 4;

const now = () => performance.timeOrigin + performance.now();
const tiny = JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });

/** Posts `n` tiny jobs from CLIENTS clients; returns the seconds until the last 202. */
async function post(url: string, apiKey: string, n: number): Promise<number> {
  const http = new HttpPool(url, { connections: CLIENTS, pipelining: 1 });
  const t0 = now();
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < n) {
          next++;
          const res = await http.request({
            path: '/v1/jobs',
            method: 'POST',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
            body: tiny,
          });
          await res.body.dump();
          if (res.statusCode !== 202) throw new Error(`POST answered ${res.statusCode}`);
        }
      }),
    );
  } finally {
    await http.close();
  }
  return (now() - t0) / 1000;
}

async function waitCompleted(pool: pg.Pool, n: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE status = 'COMPLETED'`);
    if ((rows[0]?.n ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Run {
  accepted: number;
  completed: number;
}

/** One end-to-end run on a fresh database: POST accepted/s, and jobs/s from the first POST to the last COMPLETED. */
async function endToEnd(ctx: Parameters<BenchModule['run']>[0], env: Record<string, string>): Promise<Run> {
  const db = await ctx.createDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  let svc: ChildService | undefined;
  try {
    const tenant = await createTenant(pool, 'bench');
    svc = await startChildService('start', { DATABASE_URL: db.url, ...env });
    const t0 = now();
    const postSeconds = await post(svc.url, tenant.api_key, TINY_JOBS);
    await waitCompleted(pool, TINY_JOBS);
    return { accepted: TINY_JOBS / postSeconds, completed: TINY_JOBS / ((now() - t0) / 1000) };
  } finally {
    await svc?.stop();
    await pool.end();
    await db.drop();
  }
}

/** p99 of SCRAPES sequential GET /metrics, in ms. */
async function scrapeP99(url: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < SCRAPES; i++) {
    const t0 = now();
    const res = await fetch(`${url}/metrics`);
    await res.text();
    if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
    times.push(now() - t0);
  }
  return percentile(times, 99);
}

/** SEEDED jobs across statuses as a long-running installation holds them, then ANALYZE. */
async function seedJobs(pool: pg.Pool, tenantId: string): Promise<void> {
  for (let from = 0; from < SEEDED; from += SEED_SLICE) {
    await pool.query(
      `INSERT INTO jobs (id, tenant_id, type, status, input, max_attempts, attempts, created_at, updated_at,
                         finished_at, dead_lettered_at)
       SELECT gen_random_uuid(), $1, CASE WHEN g % 3 = 0 THEN 'report' ELSE 'synthetic' END, s.status, '{}', 3, 1,
              now() - make_interval(secs => g % 86400), now() - make_interval(secs => g % 86400),
              CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN now() - make_interval(secs => g % 86400) END,
              CASE WHEN s.status = 'FAILED' AND g % 2 = 0 THEN now() - make_interval(secs => g % 86400) END
         FROM generate_series($2::int, $3::int) g
         CROSS JOIN LATERAL (SELECT CASE WHEN g % 100 < 3 THEN 'PENDING' WHEN g % 100 < 4 THEN 'RUNNING'
                                         WHEN g % 100 < 6 THEN 'FAILED' WHEN g % 100 < 7 THEN 'CANCELLED'
                                         ELSE 'COMPLETED' END AS status) s`,
      [tenantId, from, Math.min(SEEDED, from + SEED_SLICE) - 1],
    );
  }
  await pool.query('ANALYZE jobs');
}

/** Drains SCALE_JOBS tiny jobs, posted beforehand, with `processes` longhaul processes; jobs/s (database clock). */
async function drain(ctx: Parameters<BenchModule['run']>[0], processes: number): Promise<number> {
  const db = await ctx.createDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const env = {
    DATABASE_URL: db.url,
    LONGHAUL_WORKER_CONCURRENCY: String(CONCURRENCY),
    LONGHAUL_TENANT_CONCURRENCY: String(CONCURRENCY * processes),
    LONGHAUL_PG_POOL_MAX: '20',
  };
  const children: ChildService[] = [];
  try {
    const tenant = await createTenant(pool, 'bench');
    const api = await startChildService('api', env);
    try {
      await post(api.url, tenant.api_key, SCALE_JOBS);
    } finally {
      await api.stop();
    }
    await pool.query('ANALYZE');
    for (let i = 0; i < processes; i++) children.push(await startChildService('start', env));
    await waitCompleted(pool, SCALE_JOBS);
    const { rows } = await pool.query<{ s: number }>(
      `SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 AS s FROM jobs`,
    );
    return SCALE_JOBS / (rows[0]?.s ?? Number.NaN);
  } finally {
    for (const c of children) await c.stop();
    await pool.end();
    await db.drop();
  }
}

/**
 * (a) Off, on, on, off (ABBA), each side the mean of its two runs: a drift of the machine's load over
 * the four runs weighs on both sides alike, and neither side gets the better of two draws.
 */
async function tracingRows(ctx: Parameters<BenchModule['run']>[0]): Promise<BenchRow[]> {
  const env = { LONGHAUL_WORKER_CONCURRENCY: String(CONCURRENCY), LONGHAUL_TENANT_CONCURRENCY: String(CONCURRENCY) };
  const collector = await startCollector();
  try {
    const traced = { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: collector.url };
    const runs = [];
    for (const e of [env, traced, traced, env]) runs.push(await endToEnd(ctx, e));
    // Every span recorded and exported: a figure bought by dropping spans would not count.
    const expected = 2 * TINY_JOBS * SPANS_PER_JOB;
    if (collector.spans.length !== expected)
      throw new Error(`tracing on exported ${collector.spans.length} spans, not ${expected}`);
    ctx.log(`exported ${collector.spans.length} spans in ${collector.exports.protobuf} protobuf requests`);
    ctx.log(
      `runs off, on, on, off: ${runs.map((r) => `${r.completed.toFixed(0)} jobs/s, ${r.accepted.toFixed(0)} req/s`).join('; ')}`,
    );
    const mean = (a: Run, b: Run) => ({
      accepted: (a.accepted + b.accepted) / 2,
      completed: (a.completed + b.completed) / 2,
    });
    const [off1, on1, on2, off2] = runs as [Run, Run, Run, Run];
    const on = mean(on1, on2);
    const off = mean(off1, off2);
    return [
      {
        name: `tiny jobs first POST → last COMPLETED/s, tracing on, mean of 2 (${TINY_JOBS} jobs, ${CLIENTS} clients)`,
        value: on.completed,
        unit: 'jobs/s',
        baselineName: 'the same, tracing off (mean of 2, ABBA)',
        baseline: off.completed,
        target: 'ratio ≥ 0.9',
        met: on.completed / off.completed >= 0.9,
      },
      {
        name: `POST /v1/jobs accepted/s, tracing on, mean of 2 (${CLIENTS} clients)`,
        value: on.accepted,
        unit: 'req/s',
        baselineName: 'the same, tracing off (mean of 2, ABBA)',
        baseline: off.accepted,
        target: 'ratio ≥ 0.9',
        met: on.accepted / off.accepted >= 0.9,
      },
    ];
  } finally {
    await collector.close();
  }
}

/**
 * (b) /metrics: p99 of a scrape on an empty table, then with SEEDED jobs; and, on the same seeded
 * table, scrapes by a process that reads the database gauges at every scrape (as before they were read
 * in the background).
 */
async function metricsRows(ctx: Parameters<BenchModule['run']>[0]): Promise<BenchRow[]> {
  const db = await ctx.createDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const apis: ChildService[] = [];
  try {
    const tenant = await createTenant(pool, 'bench');
    const api = await startChildService('api', { DATABASE_URL: db.url });
    apis.push(api);
    const empty = await scrapeP99(api.url);
    const t0 = now();
    await seedJobs(pool, tenant.id);
    ctx.log(`seeded ${SEEDED} jobs in ${((now() - t0) / 1000).toFixed(0)} s`);
    const full = await scrapeP99(api.url);
    const reading = await startChildService('api', { DATABASE_URL: db.url, LONGHAUL_METRICS_REFRESH_SECONDS: '0' });
    apis.push(reading);
    const everyScrape = await scrapeP99(reading.url);
    const count = SEEDED.toLocaleString('en-US');
    return [
      {
        name: `/metrics scrape p99 with ${count} jobs (${SCRAPES} scrapes)`,
        value: full,
        unit: 'ms',
        baselineName: 'the same scrape, jobs table empty',
        baseline: empty,
        target: 'p99 ≤ 50 ms',
        met: full <= 50,
      },
      {
        name: `/metrics scrape p99 with ${count} jobs, each scrape reading the database (REFRESH_SECONDS=0)`,
        value: everyScrape,
        unit: 'ms',
        baselineName: 'the scrape served from the background read (above)',
        baseline: full,
      },
    ];
  } finally {
    for (const api of apis) await api.stop();
    await pool.end();
    await db.drop();
  }
}

/** (c) 1, 2 and 4 processes (each API + worker, CONCURRENCY slots) draining one backlog. */
async function scalingRows(ctx: Parameters<BenchModule['run']>[0]): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const one = await drain(ctx, 1);
  for (const n of [2, 4]) {
    const rate = await drain(ctx, n);
    rows.push({
      name: `tiny jobs drained/s by ${n} processes on one Postgres (backlog of ${SCALE_JOBS}, ${CONCURRENCY} slots each)`,
      value: rate,
      unit: 'jobs/s',
      baselineName: 'the same, 1 process',
      baseline: one,
    });
  }
  return rows;
}

export const observabilityBench: BenchModule = {
  title: 'observability: tracing cost, /metrics at a million jobs, worker processes on one Postgres',
  async run(ctx) {
    const rows: BenchRow[] = [];
    if (PARTS.has('tracing')) rows.push(...(await tracingRows(ctx)));
    if (PARTS.has('metrics')) rows.push(...(await metricsRows(ctx)));
    if (PARTS.has('scaling')) rows.push(...(await scalingRows(ctx)));
    return rows;
  },
};
