/**
 * Issue 15: the operator console at scale. Server time of the overview and of the jobs list (an admin
 * session, every tenant) with a million jobs in the table, beside the same pages on an empty table in
 * the same run, and the overview of a process that reads its figures at every view beside the default
 * (figures kept a few seconds); and the time from a checkpoint's commit (the worker's own statement and publisher) to
 * the progress bar of the job's page moving in headless Chromium, beside a plain LISTEN connection
 * receiving the same checkpoint's announcement (the floor: Postgres NOTIFY itself).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createPool, type Pool } from '../src/db/pool.ts';
import { JobEventsPublisher } from '../src/jobs/events-publisher.ts';
import { JOB_EVENTS_CHANNEL } from '../src/jobs/repository.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { writeCheckpoint } from '../src/jobs/lifecycle.ts';
import { launchChromium } from '../test/support/browser.ts';
import { percentile, type BenchModule, type BenchRow } from './harness.ts';
import { startChildService, type ChildService } from './support.ts';

/** Jobs in the big table; LONGHAUL_BENCH_CONSOLE_JOBS makes a quicker run on a busy machine. */
const JOBS = Number(process.env.LONGHAUL_BENCH_CONSOLE_JOBS ?? 1_000_000);
/** Which parts run (LONGHAUL_BENCH_CONSOLE_PARTS, a comma list of `pages`, `bar`; both by default). */
const PARTS = new Set((process.env.LONGHAUL_BENCH_CONSOLE_PARTS ?? 'pages,bar').split(','));
const TENANTS = 10;
const PAGE_WARMUP = 20;
const PAGE_SAMPLES = 300;
const CHECKPOINT_WARMUP = 10;
const CHECKPOINT_SAMPLES = 300;
/** Hundredths of a percent per checkpoint: each checkpoint moves the bar by one step. */
const TOTAL = 10_000;
const TARGET_MS = 100;
const ADMIN_TOKEN = `bench-admin-${randomUUID()}`;

/**
 * A table as a console sees it in production: mostly finished jobs over a week (a few thousand in the
 * last hour), some failed and dead-lettered, some cancelled, a backlog of pending ones, and a few running.
 */
async function seedJobs(pool: Pool, n: number): Promise<void> {
  await pool.query(
    `INSERT INTO jobs (id, tenant_id, type, status, input, max_attempts, attempts, processed, total,
                       created_at, updated_at, started_at, finished_at, dead_lettered_at, error)
     SELECT md5('bench-job-' || g)::uuid, t.ids[1 + g % $2], CASE WHEN g % 5 = 0 THEN 'report' ELSE 'synthetic' END,
            s.status, '{"chunks":100,"chunk_ms":0}', 3, CASE WHEN s.status = 'PENDING' THEN 0 ELSE 1 END,
            CASE WHEN s.status = 'COMPLETED' THEN 100 WHEN s.status = 'PENDING' THEN 0 ELSE 40 END, 100,
            c.at, c.at + interval '5 seconds', CASE WHEN s.status <> 'PENDING' THEN c.at + interval '1 second' END,
            CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN c.at + interval '5 seconds' END,
            CASE WHEN s.status = 'FAILED' THEN c.at + interval '5 seconds' END,
            CASE WHEN s.status = 'FAILED' THEN '{"message":"upstream answered 502","permanent":true}'::jsonb END
       FROM generate_series(1, $1) g
       CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM tenants) t
       CROSS JOIN LATERAL (SELECT now() - g * (interval '7 days' / $1) AS at) c
       CROSS JOIN LATERAL (SELECT CASE WHEN g % 1000 = 0 THEN 'RUNNING' WHEN g % 100 < 90 THEN 'COMPLETED'
                                       WHEN g % 100 < 94 THEN 'FAILED' WHEN g % 100 < 97 THEN 'CANCELLED'
                                       ELSE 'PENDING' END AS status) s`,
    [n, TENANTS],
  );
  await pool.query('ANALYZE jobs');
}

/** An admin console session's cookie, signed in as a browser would be. */
async function adminCookie(url: string): Promise<string> {
  const res = await fetch(`${url}/console/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: url },
    body: new URLSearchParams({ secret: ADMIN_TOKEN }),
    redirect: 'manual',
  });
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith('longhaul_console='));
  if (res.status !== 303 || cookie === undefined) throw new Error(`console sign-in answered ${res.status}`);
  return cookie.split(';')[0] ?? '';
}

/** Milliseconds of each GET of `path` (whole body read), one at a time after a warm-up. */
async function pageTimes(url: string, cookie: string, path: string): Promise<number[]> {
  const get = async () => {
    const res = await fetch(`${url}${path}`, { headers: { cookie } });
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}`);
    await res.text();
  };
  for (let i = 0; i < PAGE_WARMUP; i++) await get();
  const times: number[] = [];
  for (let i = 0; i < PAGE_SAMPLES; i++) {
    const t0 = performance.now();
    await get();
    times.push(performance.now() - t0);
  }
  return times;
}

interface Database {
  /** The API process serving the console. */
  url: string;
  dbUrl: string;
  pool: Pool;
  api: ChildService;
  cookie: string;
  drop(): Promise<void>;
}

async function database(
  create: () => Promise<{ url: string; drop(): Promise<void> }>,
  jobs: number,
): Promise<Database> {
  const db = await create();
  const pool = createPool(db.url, 4);
  for (let i = 0; i < TENANTS; i++) await createTenant(pool, `bench-tenant-${i}`);
  if (jobs > 0) await seedJobs(pool, jobs);
  const api = await startChildService('api', { DATABASE_URL: db.url, LONGHAUL_ADMIN_TOKEN: ADMIN_TOKEN });
  return {
    url: api.url,
    dbUrl: db.url,
    pool,
    api,
    cookie: await adminCookie(api.url),
    drop: async () => {
      await api.stop();
      await pool.end();
      await db.drop();
    },
  };
}

/** Checkpoint commit → the job page's bar moved (MutationObserver in Chromium), and → a LISTEN connection's notification. */
async function checkpointToBar(db: Database): Promise<{ bar: number[]; listen: number[] }> {
  const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM tenants LIMIT 1');
  const tenantId = rows[0]?.id ?? '';
  const jobId = randomUUID();
  const token = randomUUID();
  await db.pool.query(
    `INSERT INTO jobs (id, tenant_id, type, status, input, max_attempts, attempts, total, started_at, lease_token, lease_owner, lease_expires_at)
     VALUES ($1, $2, 'synthetic', 'RUNNING', '{"chunks":${TOTAL},"chunk_ms":0}', 3, 1, ${TOTAL}, now(), $3, 'bench', now() + interval '1 hour')`,
    [jobId, tenantId, token],
  );
  const publisher = new JobEventsPublisher(db.pool, createLogger('silent'));
  const listener = new pg.Client({ connectionString: db.dbUrl });
  await listener.connect();
  let onNotify: ((seq: number, at: number) => void) | undefined;
  listener.on('notification', (m) => {
    const [id, seq] = (m.payload ?? '').split(':');
    if (id === jobId) onNotify?.(Number(seq), performance.timeOrigin + performance.now());
  });
  await listener.query(`LISTEN ${JOB_EVENTS_CHANNEL}`);

  const browser = await launchChromium();
  try {
    const context = await browser.newContext();
    const [name, value] = db.cookie.split('=');
    await context.addCookies([{ name: name ?? '', value: value ?? '', url: `${db.url}/console` }]);
    const page = await context.newPage();
    let onBar: ((percent: number, at: number) => void) | undefined;
    await page.exposeBinding('longhaulBenchMark', (_source, percent: number, at: number) => onBar?.(percent, at));
    await page.goto(`${db.url}/console/jobs/${jobId}`);
    await page.locator(`progress[data-job="${jobId}"]`).first().waitFor();
    // The bar's every change, timed in the page when the console's script sets it.
    await page.evaluate(`(() => {
      const bar = document.querySelector('progress[data-job="${jobId}"]');
      new MutationObserver(() =>
        window.longhaulBenchMark(Number(bar.getAttribute('aria-valuenow')), performance.timeOrigin + performance.now()),
      ).observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
    })()`);

    const bar: number[] = [];
    const listen: number[] = [];
    for (let i = 1; i <= CHECKPOINT_WARMUP + CHECKPOINT_SAMPLES; i++) {
      const percent = (i * 100) / TOTAL;
      const barMoved = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the bar never reached ${percent} %`)), 10_000);
        onBar = (p, at) => {
          if (Math.abs(p - percent) < 1e-9) {
            clearTimeout(timer);
            resolve(at);
          }
        };
      });
      const notified = new Promise<number>((resolve) => {
        onNotify = (_seq, at) => resolve(at);
      });
      const t0 = performance.timeOrigin + performance.now();
      const seq = await writeCheckpoint(db.pool, {
        jobId,
        token,
        cursor: i,
        state: { done: i },
        processed: 1,
        leaseSeconds: 3600,
      });
      if (seq === undefined) throw new Error('the checkpoint was refused');
      publisher.publish(jobId, seq);
      const [barAt, notifiedAt] = await Promise.all([barMoved, notified]);
      if (i > CHECKPOINT_WARMUP) {
        bar.push(barAt - t0);
        listen.push(notifiedAt - t0);
      }
    }
    return { bar, listen };
  } finally {
    await browser.close();
    await listener.end();
  }
}

export const consoleBench: BenchModule = {
  title: 'Issue 15: console pages with a million jobs, checkpoint → progress bar in Chromium',
  async run(ctx) {
    ctx.log(`seeding ${JOBS.toLocaleString('en-US')} jobs…`);
    const seedStarted = performance.now();
    const empty = await database(() => ctx.createDatabase(), 0);
    const big = await database(() => ctx.createDatabase(), JOBS);
    ctx.log(`seeded in ${((performance.now() - seedStarted) / 1000).toFixed(0)} s`);
    const rows: BenchRow[] = [];
    try {
      if (PARTS.has('pages')) rows.push(...(await pageRows(ctx, empty, big)));
      if (PARTS.has('bar')) rows.push(...(await barRows(big)));
    } finally {
      await big.drop();
      await empty.drop();
    }
    return rows;
  },
};

/**
 * The overview and the jobs list on the big and the empty table; and the overview on the big table
 * served by a process that reads its figures at every view (LONGHAUL_CONSOLE_OVERVIEW_SECONDS=0), beside
 * the default one that reads them once per interval.
 */
async function pageRows(ctx: Parameters<BenchModule['run']>[0], empty: Database, big: Database): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const [label, path] of [
    ['overview', '/console'],
    ['jobs list', '/console/jobs'],
  ] as const) {
    const baseline = await pageTimes(empty.url, empty.cookie, path);
    const measured = await pageTimes(big.url, big.cookie, path);
    for (const p of [50, 99]) {
      const value = percentile(measured, p);
      rows.push({
        name: `console ${label} p${p}, GET ${path}, admin (${JOBS.toLocaleString('en-US')} jobs)`,
        value,
        unit: 'ms',
        baselineName: 'same page, empty jobs table',
        baseline: percentile(baseline, p),
        ...(p === 99 ? { target: `p99 ≤ ${TARGET_MS} ms`, met: value <= TARGET_MS } : {}),
      });
    }
    ctx.log(`${label}: p50 ${percentile(measured, 50).toFixed(1)} ms, empty ${percentile(baseline, 50).toFixed(1)} ms`);
  }
  const reading = await startChildService('api', {
    DATABASE_URL: big.dbUrl,
    LONGHAUL_ADMIN_TOKEN: ADMIN_TOKEN,
    LONGHAUL_CONSOLE_OVERVIEW_SECONDS: '0',
  });
  try {
    const kept = await pageTimes(big.url, big.cookie, '/console');
    const everyView = await pageTimes(reading.url, await adminCookie(reading.url), '/console');
    for (const p of [50, 99])
      rows.push({
        name: `console overview p${p}, each view reading its figures (OVERVIEW_SECONDS=0, ${JOBS.toLocaleString('en-US')} jobs)`,
        value: percentile(everyView, p),
        unit: 'ms',
        baselineName: 'the same page, figures kept 5 s (default), same table',
        baseline: percentile(kept, p),
      });
  } finally {
    await reading.stop();
  }
  return rows;
}

async function barRows(big: Database): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const { bar, listen } = await checkpointToBar(big);
  for (const p of [50, 99]) {
    const value = percentile(bar, p);
    rows.push({
      name: `checkpoint commit → console bar moved in Chromium p${p}`,
      value,
      unit: 'ms',
      baselineName: 'same commit → LISTEN notification',
      baseline: percentile(listen, p),
      ...(p === 99 ? { target: `p99 ≤ ${TARGET_MS} ms`, met: value <= TARGET_MS } : {}),
    });
  }
  return rows;
}
