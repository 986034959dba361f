/**
 * Issue 5: the report job over 1,000,000 demo rows, run by a real `longhaul start` process (worker,
 * checkpoints, CSV parts, PDF), in records per second, beside a raw `COPY (SELECT …) TO STDOUT` of the
 * same rows read by node-postgres in the same run. Then the same report with checkpoints disabled (every
 * chunk in one transaction, no checkpoint writes, no fsync of parts), run by this file as a child
 * process, for the checkpoint overhead. Last, the service's peak RSS (VmHWM) at 1,000,000 and 5,000,000 rows.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import { createReportJobType } from '../src/job-types/report/report.ts';
import { seedDemoOrders } from '../src/job-types/report/seed.ts';
import { createLogger } from '../src/observability/logger.ts';
import { LocalStorage } from '../src/storage/local.ts';
import { checkKey, type Body, type Storage } from '../src/storage/storage.ts';
import { createTenant } from '../src/tenants/repository.ts';
import type { Json } from '../src/worker/sdk.ts';
import type { BenchModule, BenchRow } from './harness.ts';
import { startChildService } from './support.ts';

const SMALL = 1_000_000;
const LARGE = 5_000_000;
const INPUT = { source: 'demo_orders', group_by: ['region', 'category'], metrics: ['quantity', 'amount'], formats: ['pdf', 'csv'] };
/** The CSV columns exactly as the report writes them, for the COPY baseline. */
const COPY_SQL = `COPY (SELECT id, (to_json(created_at AT TIME ZONE 'UTC') #>> '{}') || 'Z', customer, region, product, category,
  quantity, unit_price, amount, status FROM demo_orders ORDER BY id) TO STDOUT WITH (FORMAT csv)`;

/** Reads the COPY output to its end; returns the seconds it took. */
async function rawCopy(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const t0 = performance.now();
    let bytes = 0;
    await pipeline(
      client.query(copyTo(COPY_SQL)),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          cb();
        },
      }),
    );
    if (bytes === 0) throw new Error('COPY returned nothing');
    return (performance.now() - t0) / 1000;
  } finally {
    await client.end();
  }
}

/** Peak resident set of a process (Linux VmHWM), in MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)\s+kB/.exec(status)?.[1]);
  return kb / 1024;
}

/** Runs the report in a `longhaul start` process; returns its seconds (started → finished) and the process's peak RSS. */
async function serviceRun(url: string, log: (m: string) => void): Promise<{ seconds: number; rows: number; rssMb: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'longhaul-bench-report-'));
  const pool = createPool(url, 2);
  const svc = await startChildService('start', { DATABASE_URL: url, LONGHAUL_DATA_DIR: dir, LONGHAUL_LOG_LEVEL: 'warn' });
  try {
    const tenant = await createTenant(pool, `bench-${Date.now()}`);
    const res = await fetch(`${svc.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'report', input: INPUT }),
    });
    if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    const deadline = Date.now() + 180_000;
    for (;;) {
      const { rows } = await pool.query<{ status: string; seconds: number; processed: number; error: unknown }>(
        `SELECT status, extract(epoch from finished_at - started_at)::float8 AS seconds, processed, error FROM jobs WHERE id = $1`,
        [id],
      );
      const j = rows[0];
      if (j?.status === 'COMPLETED') {
        const rssMb = await peakRssMb(svc.child.pid ?? 0);
        log(`report over ${j.processed} rows: ${j.seconds.toFixed(2)} s, peak RSS ${rssMb.toFixed(0)} MB`);
        return { seconds: j.seconds, rows: j.processed, rssMb };
      }
      if (j?.status === 'FAILED' || Date.now() > deadline) throw new Error(`report did not complete: ${JSON.stringify(j)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await svc.stop();
    await pool.end();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `node bench/report.ts no-checkpoints URL` and returns the seconds it reports. */
async function noCheckpointRun(url: string): Promise<number> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'no-checkpoints', url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`no-checkpoints run exited with ${code}`);
  return (JSON.parse(out) as { seconds: number }).seconds;
}

/** Storage that writes without fsync: what "checkpoints disabled" saves on durability. */
class UnsyncedStorage implements Storage {
  readonly #inner: LocalStorage;
  constructor(root: string) {
    this.#inner = new LocalStorage(root);
  }
  async put(key: string, body: Body): Promise<{ size: number }> {
    if (typeof body !== 'string' && !Buffer.isBuffer(body)) return this.#inner.put(key, body);
    const file = path.join(this.#inner.root, ...checkKey(key));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, body);
    return { size: (await stat(file)).size };
  }
  get(key: string) {
    return this.#inner.get(key);
  }
  stat(key: string) {
    return this.#inner.stat(key);
  }
  list(prefix: string) {
    return this.#inner.list(prefix);
  }
  delete(key: string) {
    return this.#inner.delete(key);
  }
}

/** The child: start, every chunk and finish in one transaction, no checkpoint written, parts not fsynced. */
async function runWithoutCheckpoints(url: string): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'longhaul-bench-nocp-'));
  const config = loadConfig({ DATABASE_URL: url, LONGHAUL_DATA_DIR: dir });
  const pool = createPool(url, 2);
  const type = createReportJobType({ config, storage: new UnsyncedStorage(path.join(dir, 'artifacts')), pool });
  const tenant = await createTenant(pool, `bench-nocp-${Date.now()}`);
  const { rows } = await pool.query<{ id: string }>(`INSERT INTO jobs (id, tenant_id, type, input, max_attempts) VALUES (gen_random_uuid(), $1, 'report', $2, 1) RETURNING id`, [tenant.id, JSON.stringify(INPUT)]);
  const id = rows[0]?.id ?? '';
  const client = await pool.connect();
  const t0 = performance.now();
  await client.query('BEGIN');
  const ctx = { job: { id, tenantId: tenant.id, type: 'report', input: type.input.parse(INPUT), metadata: null, attempt: 1 }, log: createLogger('silent'), signal: new AbortController().signal, db: client };
  const s = await type.start(ctx);
  let cursor: Json = s.cursor ?? null;
  let state = s.state;
  for (;;) {
    const r = await type.chunk({ ...ctx, chunkSize: config.report.chunkSize }, cursor, state);
    state = r.state;
    cursor = r.cursor;
    if (r.done) break;
  }
  await type.finish(ctx, state);
  await client.query('COMMIT');
  const seconds = (performance.now() - t0) / 1000;
  client.release();
  await pool.end();
  await rm(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify({ seconds, rows: state.agg.rows }));
}

export const reportBench: BenchModule = {
  title: 'report job: records/s vs raw COPY, checkpoint overhead, peak RSS at 1M and 5M rows',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const small = await ctx.createDatabase();
    try {
      const pool = createPool(small.url, 2);
      const seedMs = await seedDemoOrders(pool, SMALL);
      await pool.end();
      ctx.log(`seeded ${SMALL} rows in ${(seedMs / 1000).toFixed(1)} s`);
      await rawCopy(small.url); // warm the cache: both runs read a table in memory
      const copySeconds = await rawCopy(small.url);
      const report = await serviceRun(small.url, (m) => ctx.log(m));
      const noCp = await noCheckpointRun(small.url);
      const copyRate = SMALL / copySeconds;
      const reportRate = report.rows / report.seconds;
      rows.push({
        name: `report job records/s (${SMALL.toLocaleString('en-US')} rows, PDF + CSV)`,
        value: reportRate,
        unit: 'rows/s',
        baselineName: 'raw COPY TO STDOUT rows/s',
        baseline: copyRate,
        target: 'ratio ≥ 0.5',
        met: reportRate / copyRate >= 0.5,
      });
      const overhead = report.seconds / noCp - 1;
      rows.push({
        name: 'report with checkpoints: seconds',
        value: report.seconds,
        unit: 's',
        baselineName: 'checkpoints disabled: seconds',
        baseline: noCp,
        target: 'overhead ≤ 3 %',
        met: overhead <= 0.03,
      });
      rows.push({ name: `seed demo_orders ${SMALL.toLocaleString('en-US')} rows`, value: seedMs / 1000, unit: 's' });
      const large = await ctx.createDatabase();
      try {
        const lpool = createPool(large.url, 2);
        const largeSeedMs = await seedDemoOrders(lpool, LARGE);
        await lpool.end();
        ctx.log(`seeded ${LARGE} rows in ${(largeSeedMs / 1000).toFixed(1)} s`);
        const big = await serviceRun(large.url, (m) => ctx.log(m));
        rows.push({ name: `seed demo_orders ${LARGE.toLocaleString('en-US')} rows`, value: largeSeedMs / 1000, unit: 's', target: 'well under 60 s', met: largeSeedMs < 60_000 });
        rows.push({
          name: `peak RSS, report over ${LARGE.toLocaleString('en-US')} rows`,
          value: big.rssMb,
          unit: 'MB',
          baselineName: `at ${SMALL.toLocaleString('en-US')} rows`,
          baseline: report.rssMb,
          target: 'ratio ≤ 1.2',
          met: big.rssMb / report.rssMb <= 1.2,
        });
      } finally {
        await large.drop();
      }
    } finally {
      await small.drop();
    }
    return rows;
  },
};

if (import.meta.main && process.argv[2] === 'no-checkpoints' && process.argv[3] !== undefined) {
  await runWithoutCheckpoints(process.argv[3]);
}
