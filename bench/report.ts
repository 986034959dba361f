/**
 * Issue 5: the report job over 1,000,000 demo rows, run by a real `longhaul start` process (worker,
 * checkpoints, CSV, PDF), in records per second, beside a raw `COPY (SELECT …) TO STDOUT` of the
 * same rows read by node-postgres in the same run (the fastest of each: noise only ever adds time). Then
 * the same report, in the same kind of process on the same data, with checkpoints disabled
 * (LONGHAUL_REPORT_CHECKPOINTS=false: every chunk in one step, CSV writes not synced, one commit at the
 * end), for the checkpoint overhead: each round runs both modes back to back (in alternating order), and
 * the overhead is the median of the rounds' ratios, so that the machine's speed drifting between rounds
 * (it does: bench/RESULTS.md) cancels out; likewise for the CPU both take (service and Postgres). A control
 * runs the checkpointed report once more in each round and is paired with it the same way: its true
 * ratio is 1, so its distance from 1 shows what difference this run could resolve. Beside it, the
 * time the checkpointed runs' chunks waited for their checkpoints (the service's
 * longhaul_checkpoint_wait_seconds_total), as a share of the run: measured inside each run, so the
 * machine's speed does not enter it. Last,
 * the service's peak RSS (VmHWM, the highest of the runs) at 1,000,000 and 5,000,000 rows; the 5,000,000
 * rows are seeded into the same database once the 1,000,000-row runs are done.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { createPool } from '../src/db/pool.ts';
import { seedDemoOrders } from '../src/job-types/report/seed.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule, type BenchRow } from './harness.ts';
import { cpuBetween, metricValue, postgresCpu, processCpuSeconds, startChildService } from './support.ts';

const SMALL = 1_000_000;
const LARGE = 5_000_000;
/**
 * Rounds of COPY, the report, the report without checkpoints and the control. Seven, because one run on
 * a shared machine scatters far more than the checkpoint overhead to be shown (bench/RESULTS.md); how
 * near the median of seven paired ratios lands to the true one, the control shows.
 */
const ROUNDS = 7;
/** Runs of the report over 5,000,000 rows, for its peak RSS. */
const LARGE_RUNS = 2;
/** How often a run polls for its job's completion (bounds the timing error). */
const POLL_MS = 10;
const INPUT = {
  source: 'demo_orders',
  group_by: ['region', 'category'],
  metrics: ['quantity', 'amount'],
  formats: ['pdf', 'csv'],
};
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

interface Run {
  seconds: number;
  rows: number;
  rssMb: number;
  /** CPU seconds of the service process and of every Postgres process during the run, where they are local. */
  cpuSeconds: number | undefined;
  /** Seconds the job's chunks waited for their checkpoints (the service's own count). */
  checkpointWaitSeconds: number;
}

/** The median of a list of numbers (ROUNDS is odd, so it is the middle one). */
const median = (xs: number[]): number => percentile(xs, 50);

/**
 * Runs the report in a `longhaul start` process (with `env` added); returns its seconds (started →
 * finished), the process's peak RSS, and the CPU the run took.
 */
async function serviceRun(
  url: string,
  label: string,
  env: Record<string, string>,
  log: (m: string) => void,
): Promise<Run> {
  const dir = await mkdtemp(path.join(tmpdir(), 'longhaul-bench-report-'));
  const pool = createPool(url, 2);
  const svc = await startChildService('start', {
    DATABASE_URL: url,
    LONGHAUL_DATA_DIR: dir,
    LONGHAUL_LOG_LEVEL: 'warn',
    ...env,
  });
  try {
    const tenant = await createTenant(pool, `bench-${Date.now()}`);
    // Wall-clock from the submit to COMPLETED seen (the job's own timestamps are its transactions' start times).
    const svcCpu0 = processCpuSeconds(svc.child.pid);
    const pgCpu0 = await postgresCpu(pool);
    const t0 = performance.now();
    const res = await fetch(`${svc.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'report', input: INPUT }),
    });
    if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    const deadline = Date.now() + 180_000;
    for (;;) {
      const { rows } = await pool.query<{ status: string; processed: number; error: unknown }>(
        `SELECT status, processed, error FROM jobs WHERE id = $1`,
        [id],
      );
      const j = rows[0];
      if (j?.status === 'COMPLETED') {
        const seconds = (performance.now() - t0) / 1000;
        const svcCpu1 = processCpuSeconds(svc.child.pid);
        const pgCpu = cpuBetween(pgCpu0, await postgresCpu(pool));
        const cpuSeconds =
          svcCpu0 === undefined || svcCpu1 === undefined || pgCpu === undefined ? undefined : svcCpu1 - svcCpu0 + pgCpu;
        const rssMb = await peakRssMb(svc.child.pid ?? 0);
        const checkpointWaitSeconds =
          (await metricValue(svc.url, 'longhaul_checkpoint_wait_seconds_total{type="report"}')) ?? 0;
        const cpuText = cpuSeconds === undefined ? '' : `, CPU ${cpuSeconds.toFixed(2)} s`;
        log(
          `${label} over ${j.processed} rows: ${seconds.toFixed(2)} s (${Math.round(j.processed / seconds).toLocaleString('en-US')} rows/s)${cpuText}, ` +
            `waited for checkpoints ${(checkpointWaitSeconds * 1000).toFixed(0)} ms, peak RSS ${rssMb.toFixed(0)} MB`,
        );
        return { seconds, rows: j.processed, rssMb, cpuSeconds, checkpointWaitSeconds };
      }
      if (j?.status === 'FAILED' || Date.now() > deadline)
        throw new Error(`report did not complete: ${JSON.stringify(j)}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    await svc.stop();
    await pool.end();
    await rm(dir, { recursive: true, force: true });
  }
}

export const reportBench: BenchModule = {
  title: 'report job: records/s vs raw COPY, checkpoint overhead, peak RSS at 1M and 5M rows',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const db = await ctx.createDatabase();
    try {
      const pool = createPool(db.url, 2);
      const seedMs = await seedDemoOrders(pool, SMALL);
      ctx.log(`seeded ${SMALL} rows in ${(seedMs / 1000).toFixed(1)} s`);
      await rawCopy(db.url); // warm the cache: every run reads a table in memory
      let copySeconds = Infinity;
      let report: Run | undefined;
      let smallRss = 0;
      const on: Run[] = [];
      const off: Run[] = [];
      const control: Run[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const c = await rawCopy(db.url);
        ctx.log(`raw COPY: ${c.toFixed(2)} s (${Math.round(SMALL / c).toLocaleString('en-US')} rows/s)`);
        copySeconds = Math.min(copySeconds, c);
        const withCheckpoints = async () => {
          const r = await serviceRun(db.url, 'report', {}, (m) => ctx.log(m));
          if (report === undefined || r.seconds < report.seconds) report = r;
          smallRss = Math.max(smallRss, r.rssMb);
          on.push(r);
        };
        const without = async () =>
          void off.push(
            await serviceRun(db.url, 'report, checkpoints off', { LONGHAUL_REPORT_CHECKPOINTS: 'false' }, (m) =>
              ctx.log(m),
            ),
          );
        const again = async () =>
          void control.push(await serviceRun(db.url, 'report again (control)', {}, (m) => ctx.log(m)));
        // The checkpointed run in the middle, next to both its partners; which comes first alternates.
        for (const run of round % 2 === 0 ? [without, withCheckpoints, again] : [again, withCheckpoints, without])
          await run();
      }
      if (report === undefined) throw new Error('no report run');
      const copyRate = SMALL / copySeconds;
      const reportRate = report.rows / report.seconds;
      rows.push({
        name: `report job records/s (${SMALL.toLocaleString('en-US')} rows, PDF + CSV, best of ${ROUNDS})`,
        value: reportRate,
        unit: 'rows/s',
        baselineName: 'raw COPY TO STDOUT rows/s',
        baseline: copyRate,
        target: 'ratio ≥ 0.5',
        met: reportRate / copyRate >= 0.5,
      });
      const paired = (f: (r: Run) => number | undefined, partners = off): number[] =>
        on.flatMap((r, i) => {
          const a = f(r);
          const o = partners[i];
          const b = o === undefined ? undefined : f(o);
          return a === undefined || b === undefined ? [] : [a / b];
        });
      const ratio = median(paired((r) => r.seconds));
      ctx.log(
        `checkpoint overhead, round by round: ${paired((r) => r.seconds)
          .map((x) => `${((x - 1) * 100).toFixed(1)} %`)
          .join(', ')}; median ${((ratio - 1) * 100).toFixed(1)} %`,
      );
      rows.push({
        name: `report with checkpoints: seconds (median of ${ROUNDS}; ratio: median of the rounds' ratios)`,
        value: median(on.map((r) => r.seconds)),
        unit: 's',
        baselineName: 'same, LONGHAUL_REPORT_CHECKPOINTS=false',
        baseline: median(off.map((r) => r.seconds)),
        ratio,
        target: 'overhead ≤ 3 %',
        met: ratio <= 1.03,
      });
      // The control: the same checkpointed report twice per round, the same pairing. Its true ratio is 1,
      // so how far its median lands from 1 is how finely this run of the bench can tell a difference.
      const controlRatio = median(paired((r) => r.seconds, control));
      ctx.log(
        `control (the same mode twice), round by round: ${paired((r) => r.seconds, control)
          .map((x) => `${((x - 1) * 100).toFixed(1)} %`)
          .join(', ')}; median ${((controlRatio - 1) * 100).toFixed(1)} %`,
      );
      rows.push({
        name: `control: report with checkpoints, seconds, against itself in the same rounds (true ratio 1: the bench's resolution)`,
        value: median(on.map((r) => r.seconds)),
        unit: 's',
        baselineName: 'same, run again',
        baseline: median(control.map((r) => r.seconds)),
        ratio: controlRatio,
      });
      const cpuRatios = paired((r) => r.cpuSeconds);
      if (cpuRatios.length > 0) {
        rows.push({
          name: `report with checkpoints: CPU s, service + Postgres (median of ${cpuRatios.length}; ratio: median of the rounds' ratios)`,
          value: median(on.flatMap((r) => r.cpuSeconds ?? [])),
          unit: 's',
          baselineName: 'same, LONGHAUL_REPORT_CHECKPOINTS=false',
          baseline: median(off.flatMap((r) => r.cpuSeconds ?? [])),
          ratio: median(cpuRatios),
        });
        rows.push({
          name: `control: report with checkpoints, CPU s, against itself in the same rounds`,
          value: median(on.flatMap((r) => r.cpuSeconds ?? [])),
          unit: 's',
          baselineName: 'same, run again',
          baseline: median(control.flatMap((r) => r.cpuSeconds ?? [])),
          ratio: median(paired((r) => r.cpuSeconds, control)),
        });
      }
      rows.push({
        name: `report with checkpoints: time its chunks waited for checkpoints, % of the run (median of ${ROUNDS})`,
        value: median(on.map((r) => (100 * r.checkpointWaitSeconds) / r.seconds)),
        unit: '%',
      });
      rows.push({ name: `seed demo_orders ${SMALL.toLocaleString('en-US')} rows`, value: seedMs / 1000, unit: 's' });
      const largeSeedMs = await seedDemoOrders(pool, LARGE);
      await pool.end();
      ctx.log(`seeded ${LARGE} rows in ${(largeSeedMs / 1000).toFixed(1)} s`);
      // Peak RSS scatters from run to run (how far V8 lets the young generation grow), so each
      // size's figure is the highest of its runs: every 1M-row run with checkpoints, and LARGE_RUNS at 5M.
      let bigRss = 0;
      for (let i = 0; i < LARGE_RUNS; i++)
        bigRss = Math.max(bigRss, (await serviceRun(db.url, 'report', {}, (m) => ctx.log(m))).rssMb);
      rows.push({
        name: `seed demo_orders ${LARGE.toLocaleString('en-US')} rows`,
        value: largeSeedMs / 1000,
        unit: 's',
        target: 'well under 60 s',
        met: largeSeedMs < 60_000,
      });
      rows.push({
        name: `peak RSS, report over ${LARGE.toLocaleString('en-US')} rows (highest of ${LARGE_RUNS})`,
        value: bigRss,
        unit: 'MB',
        baselineName: `at ${SMALL.toLocaleString('en-US')} rows (highest of ${ROUNDS})`,
        baseline: smallRss,
        target: 'ratio ≤ 1.2',
        met: bigRss / smallRss <= 1.2,
      });
    } finally {
      await db.drop();
    }
    return rows;
  },
};
