/**
 * Issue 19: longhaul beside the Postgres job queues its users would pick instead, on the same Postgres
 * in the same run: Graphile Worker, pg-boss's own `work()`, and a raw `SKIP LOCKED` queue.
 *
 * - drain: a backlog of tiny jobs run to completion at 8 and at 32 slots, jobs/s and WAL per job
 *   (`pg_current_wal_lsn()` around the drain);
 * - pickup on an idle system: submit answered → handler started, p50 and p99;
 * - submission at 16 and 64 clients: longhaul over HTTP, Graphile `addJob`, pg-boss `send()`;
 * - one job of many empty chunks, a checkpoint each, beside as many committed one-row UPDATEs: time and
 *   WAL per step.
 *
 * The drains and the pickups run in rounds (ROUNDS), every system in turn in each round.
 * Where longhaul's WAL goes, by table and index, is logged from pg_walinspect (docs/performance.md).
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import {
  Logger as GraphileLogger,
  makeWorkerUtils,
  run as runGraphile,
  type Runner,
  type WorkerUtils,
} from 'graphile-worker';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { Pool as HttpPool } from 'undici';
import { absorbConnectionErrors } from '../src/db/pool.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule, type BenchRow } from './harness.ts';
import { jobPoster, now, PROBE_BODY, PROBE_TYPES, probeStartedAt } from './pickup.ts';
import {
  cpuBetween,
  postgresCpu,
  processCpuSeconds,
  startChildService,
  timedLoops,
  type ChildService,
} from './support.ts';

/** Tiny jobs per drain (BENCH_PEERS_JOBS makes a quick run smaller). */
const DRAIN_JOBS = Number(process.env.BENCH_PEERS_JOBS ?? 5000);
/** Parts of the row to run (BENCH_PEERS_PARTS, comma-separated; default all): drain, pickup, checkpoint, submit. */
const PARTS = new Set((process.env.BENCH_PEERS_PARTS ?? 'drain,pickup,checkpoint,submit').split(','));
/** Slot counts of the drains (BENCH_PEERS_SLOTS, comma-separated; default 8,32). */
const SLOTS = (process.env.BENCH_PEERS_SLOTS ?? '8,32').split(',').map(Number);
const SUBMIT_CLIENTS = [16, 64] as const;
const SUBMIT_SECONDS = 3;
/**
 * Rounds of the drains and the pickups, each a turn of every system compared against a target: the
 * machine's speed drifts by a third over minutes, and a figure measured minutes before its peer's carried
 * that drift into the ratio. A drain's ratio is the median of the rounds' ratios, a pickup's percentiles
 * are those of every round's samples together (BENCH_PEERS_ROUNDS; default 3).
 */
const ROUNDS = Number(process.env.BENCH_PEERS_ROUNDS ?? 3);
/** Pickups per system over all rounds: the p99 of 60, by nearest rank, was their maximum; of 200 it is the third highest. */
const PICKUP_SAMPLES = 200;
const PICKUP_WARMUP = 5;
/** How long after its answer longhaul's pickup job is first looked for as finished (the bench's polls are queries). */
const PICKUP_FIRST_LOOK_MS = 10;
/** How long every system is left idle between one pickup job's end and the next job. */
const PICKUP_IDLE_MS = 20;
const CHECKPOINT_STEPS = 1000;
/** How often a drain's end is looked for (each look is a query the workers compete with). */
const DONE_POLL_MS = 20;
const TINY_BODY = JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });

async function until(fn: () => Promise<boolean>, ms: number, pollMs = 2): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** A figure rounded to a whole number, with thousands separators, as the log gives it. */
const whole = (n: number): string => Math.round(n).toLocaleString('en-US');

/**
 * Waits until `sql` finds no row: a drain's end, looked for as one job not yet finished, every system
 * alike. A count of what is left, planned from statistics taken over the full backlog, read longhaul's
 * table whole at every look (longhaul keeps its finished jobs, the peers delete theirs), on the cores the
 * drain runs on.
 */
async function untilNoneLeft(db: pg.Pool, sql: string, params: unknown[]): Promise<void> {
  await until(async () => (await db.query(sql, params)).rows.length === 0, 300_000, DONE_POLL_MS);
}

async function lsn(db: pg.Pool): Promise<string> {
  const { rows } = await db.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
  return rows[0]?.l ?? '0/0';
}

/** Bytes of full-page images between two LSNs: a page's first change after a Postgres checkpoint writes all of it. */
async function fpiBytes(db: pg.Pool, from: string, to: string): Promise<number> {
  const { rows } = await db.query<{ b: number }>(
    'SELECT coalesce(sum(fpi_size), 0)::float8 AS b FROM pg_get_wal_stats($1::pg_lsn, $2::pg_lsn)',
    [from, to],
  );
  return rows[0]?.b ?? Number.NaN;
}

async function walBytes(db: pg.Pool, from: string): Promise<number> {
  const { rows } = await db.query<{ b: number }>('SELECT (pg_current_wal_lsn() - $1::pg_lsn)::float8 AS b', [from]);
  return rows[0]?.b ?? Number.NaN;
}

/**
 * WAL between two LSNs by relation (tables, indexes, TOAST), from pg_walinspect: each record counts
 * once, for the relation of its first block; records without a block (commits, …) by resource manager.
 */
async function walByRelation(db: pg.Pool, from: string, to: string): Promise<string> {
  const { rows } = await db.query<{ rel: string; records: number; bytes: number; fpi: number }>(
    `WITH b AS (
       SELECT DISTINCT ON (start_lsn) start_lsn, reltablespace, relfilenode, record_length
         FROM pg_get_wal_block_info($1::pg_lsn, $2::pg_lsn, false) ORDER BY start_lsn, block_id),
     fpi AS (
       SELECT relfilenode, sum(block_fpi_length) AS fpi FROM pg_get_wal_block_info($1::pg_lsn, $2::pg_lsn, false) GROUP BY 1),
     per_rel AS (
       SELECT COALESCE(pg_filenode_relation(0, b.relfilenode)::text, 'filenode ' || b.relfilenode) AS rel,
              count(*)::int AS records, sum(record_length)::float8 AS bytes, max(fpi.fpi)::float8 AS fpi
         FROM b LEFT JOIN fpi USING (relfilenode) GROUP BY 1),
     other AS (
       SELECT '(no block: ' || resource_manager || ')' AS rel, count(*)::int AS records, sum(record_length)::float8 AS bytes, 0::float8 AS fpi
         FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn) r
        WHERE block_ref IS NULL GROUP BY resource_manager)
     SELECT * FROM per_rel UNION ALL SELECT * FROM other ORDER BY bytes DESC LIMIT 20`,
    [from, to],
  );
  return rows
    .map(
      (r) =>
        `${r.rel.padEnd(44)} ${String(r.records).padStart(7)} records ${whole(r.bytes).padStart(12)} B (FPI ${whole(r.fpi ?? 0)} B)`,
    )
    .join('\n    ');
}

/** WAL between two LSNs by record type (heap HOT update, index insert, commit, …), from pg_walinspect. */
async function walByRecord(db: pg.Pool, from: string, to: string): Promise<string> {
  const { rows } = await db.query<{ rec: string; n: number; bytes: number; fpi: number }>(
    `SELECT "resource_manager/record_type" AS rec, count::int AS n, record_size::float8 AS bytes, fpi_size::float8 AS fpi
       FROM pg_get_wal_stats($1::pg_lsn, $2::pg_lsn, true) WHERE count > 0 ORDER BY record_size + fpi_size DESC LIMIT 12`,
    [from, to],
  );
  return rows
    .map(
      (r) =>
        `${r.rec.padEnd(44)} ${String(r.n).padStart(7)} records ${whole(r.bytes).padStart(12)} B (FPI ${whole(r.fpi)} B)`,
    )
    .join('\n    ');
}

/** The jobs table's update counters (HOT and not), as the statistics collector last got them. */
async function jobsUpdates(db: pg.Pool): Promise<{ upd: number; hot: number }> {
  // Backends report their counters when idle, at most once a second.
  await new Promise((r) => setTimeout(r, 1500));
  const { rows } = await db.query<{ upd: number; hot: number }>(
    `SELECT n_tup_upd::float8 AS upd, n_tup_hot_upd::float8 AS hot FROM pg_stat_user_tables WHERE relname = 'jobs'`,
  );
  return rows[0] ?? { upd: Number.NaN, hot: Number.NaN };
}

interface Drain {
  perSecond: number;
  walPerJob: number;
  from: string;
  to: string;
  cpuUs: CpuPerJob;
}

/** CPU per job of the process that ran or submitted the jobs (`own`) and of Postgres; undefined where not local. */
type CpuPerJob = { own: number; postgres: number } | undefined;

/** CPU readings of the process running or submitting the jobs (`own`) and of Postgres, taken now. */
async function cpuFrom(db: pg.Pool, own: () => number | undefined) {
  const own0 = own();
  const pg0 = await postgresCpu(db);
  /** CPU per job since the readings, over `jobs` jobs done meanwhile. */
  return async (jobs: number): Promise<CpuPerJob> => {
    const own1 = own();
    const pgUsed = cpuBetween(pg0, await postgresCpu(db));
    if (own0 === undefined || own1 === undefined || pgUsed === undefined || jobs <= 0) return undefined;
    return { own: ((own1 - own0) * 1e6) / jobs, postgres: (pgUsed * 1e6) / jobs };
  };
}

/** The rounds' medians of a system's drains: rate, WAL and CPU per job, each on its own. */
function middle(runs: Drain[]): Omit<Drain, 'from' | 'to'> {
  const med = (f: (d: Drain) => number) => percentile(runs.map(f), 50);
  return {
    perSecond: med((d) => d.perSecond),
    walPerJob: med((d) => d.walPerJob),
    cpuUs: runs.every((d) => d.cpuUs !== undefined)
      ? { own: med((d) => d.cpuUs?.own ?? 0), postgres: med((d) => d.cpuUs?.postgres ?? 0) }
      : undefined,
  };
}

/** longhaul: a backlog submitted by an API-only process, drained by a service with `slots` worker slots. */
async function longhaulDrain(
  db: pg.Pool,
  url: string,
  slots: number,
  env: Record<string, string>,
  label: string,
): Promise<Drain> {
  const tenant = await createTenant(db, `peers-${label}-${randomUUID().slice(0, 6)}`);
  const api = await startChildService('api', { DATABASE_URL: url, ...env });
  const http = new HttpPool(api.url, { connections: 16 });
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < DRAIN_JOBS) {
          next++;
          const res = await http.request({
            path: '/v1/jobs',
            method: 'POST',
            headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' },
            body: TINY_BODY,
          });
          await res.body.dump();
          if (res.statusCode !== 202) throw new Error(`POST answered ${res.statusCode}`);
        }
      }),
    );
  } finally {
    await http.close();
    await api.stop();
  }
  await db.query('ANALYZE');
  await db.query('CHECKPOINT');
  const from = await lsn(db);
  const svc = await startChildService('start', {
    DATABASE_URL: url,
    LONGHAUL_WORKER_CONCURRENCY: String(slots),
    ...env,
  });
  try {
    // The service's start-up is not the jobs' CPU: readings from its readiness, over the jobs left then.
    const { rows: left } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND phase = 'ACTIVE'`,
      [tenant.id],
    );
    const cpu = await cpuFrom(db, () => processCpuSeconds(svc.child.pid));
    // A job not finished, in the order jobs_active keeps them.
    await untilNoneLeft(
      db,
      `SELECT 1 FROM jobs WHERE tenant_id = $1 AND phase = 'ACTIVE' ORDER BY created_at LIMIT 1`,
      [tenant.id],
    );
    const to = await lsn(db);
    const { rows: done } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND status = 'COMPLETED'`,
      [tenant.id],
    );
    if (done[0]?.n !== DRAIN_JOBS) throw new Error(`${done[0]?.n} of ${DRAIN_JOBS} jobs completed`);
    const wal = await walBytes(db, from);
    const { rows } = await db.query<{ s: number }>(
      `SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 AS s FROM jobs WHERE tenant_id = $1`,
      [tenant.id],
    );
    return {
      perSecond: DRAIN_JOBS / (rows[0]?.s ?? Number.NaN),
      walPerJob: wal / DRAIN_JOBS,
      from,
      to,
      cpuUs: await cpu(left[0]?.n ?? 0),
    };
  } finally {
    await svc.stop();
  }
}

/** Graphile Worker running a no-op task over a backlog of DRAIN_JOBS, from its first handler call to an empty queue. */
async function graphileDrain(db: pg.Pool, url: string, utils: WorkerUtils, slots: number): Promise<Drain> {
  const task = `noop_${slots}`;
  await utils.addJobs(Array.from({ length: DRAIN_JOBS }, (_, i) => ({ identifier: task, payload: { i } })));
  await db.query('ANALYZE');
  await db.query('CHECKPOINT');
  let first = 0;
  const from = await lsn(db);
  const pgPool = graphilePool(url, slots + 2);
  const cpu = await cpuFrom(db, ownCpuSeconds);
  const runner = await runGraphile({
    pgPool,
    concurrency: slots,
    noHandleSignals: true,
    pollInterval: 2000,
    logger: quietGraphileLogger(),
    taskList: {
      [task]: async () => {
        first ||= now();
      },
    },
  });
  try {
    await untilNoneLeft(
      db,
      `SELECT 1 FROM graphile_worker._private_jobs j
         JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = $1 LIMIT 1`,
      [task],
    );
    const s = (now() - first) / 1000;
    const cpuUs = await cpu(DRAIN_JOBS);
    const to = await lsn(db);
    return { perSecond: DRAIN_JOBS / s, walPerJob: (await walBytes(db, from)) / DRAIN_JOBS, from, to, cpuUs };
  } finally {
    await runner.stop();
    await pgPool.end();
  }
}

/** pg-boss's `work()` (batch = slots) over a backlog of DRAIN_JOBS no-op jobs, from its first batch to all completed. */
async function bossDrain(db: pg.Pool, url: string, slots: number): Promise<Drain> {
  const q = `peers-drain-${slots}`;
  const boss = new PgBoss({ connectionString: url, max: 10, supervise: false, schedule: false });
  await boss.start();
  try {
    await boss.createQueue(q);
    await boss.insert(
      q,
      Array.from({ length: DRAIN_JOBS }, (_, i) => ({ data: { i } })),
    );
    await db.query('ANALYZE');
    await db.query('CHECKPOINT');
    let first = 0;
    const from = await lsn(db);
    const cpu = await cpuFrom(db, ownCpuSeconds);
    await boss.work(q, { batchSize: slots, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 }, async () => {
      first ||= now();
    });
    await untilNoneLeft(db, `SELECT 1 FROM pgboss.job WHERE name = $1 AND state < 'completed' LIMIT 1`, [q]);
    const s = (now() - first) / 1000;
    const cpuUs = await cpu(DRAIN_JOBS);
    const to = await lsn(db);
    const { rows: done } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'`,
      [q],
    );
    if (done[0]?.n !== DRAIN_JOBS) throw new Error(`${done[0]?.n} of ${DRAIN_JOBS} pg-boss jobs completed`);
    return { perSecond: DRAIN_JOBS / s, walPerJob: (await walBytes(db, from)) / DRAIN_JOBS, from, to, cpuUs };
  } finally {
    await boss.stop({ graceful: false });
  }
}

/** A raw queue: `conns` connections each deleting one row at a time with FOR UPDATE SKIP LOCKED, autocommit. */
async function rawDrain(db: pg.Pool, url: string, conns: number): Promise<Drain> {
  await db.query('DROP TABLE IF EXISTS peers_raw');
  await db.query('CREATE TABLE peers_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)');
  await db.query(`INSERT INTO peers_raw (payload) SELECT jsonb_build_object('i', g) FROM generate_series(1, $1) g`, [
    DRAIN_JOBS,
  ]);
  await db.query('ANALYZE peers_raw');
  await db.query('CHECKPOINT');
  const pool = new pg.Pool({ connectionString: url, max: conns });
  try {
    await Promise.all(Array.from({ length: conns }, () => pool.query('SELECT 1')));
    const from = await lsn(db);
    const cpu = await cpuFrom(db, ownCpuSeconds);
    const t0 = now();
    await Promise.all(
      Array.from({ length: conns }, async () => {
        for (;;) {
          const { rowCount } = await pool.query(
            `DELETE FROM peers_raw WHERE id = (SELECT id FROM peers_raw ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING payload`,
          );
          if (rowCount === 0) return;
        }
      }),
    );
    const s = (now() - t0) / 1000;
    const cpuUs = await cpu(DRAIN_JOBS);
    const to = await lsn(db);
    return { perSecond: DRAIN_JOBS / s, walPerJob: (await walBytes(db, from)) / DRAIN_JOBS, from, to, cpuUs };
  } finally {
    await pool.end();
  }
}

/**
 * A pool for Graphile Worker, ended by the bench: Graphile's own pools are ended without being awaited, their
 * error handlers removed first, so dropping the database after it would end the process on an idle
 * connection's 'error'.
 */
function graphilePool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  absorbConnectionErrors(pool);
  return pool;
}

function quietGraphileLogger() {
  // Graphile logs every job at info; the bench prints only its table.
  return new GraphileLogger(() => () => undefined);
}

/**
 * One job of CHECKPOINT_STEPS empty chunks on `svc`, after a Postgres checkpoint (one during the job would
 * add the full-page images of every page touched after it; each row also says what it was without them).
 * `watched`: a stream follows the job from its submission to its end, so every checkpoint is announced.
 */
async function checkpointJob(db: pg.Pool, svc: ChildService, apiKey: string, watched: boolean) {
  await db.query('CHECKPOINT');
  const from = await lsn(db);
  const auth = { authorization: `Bearer ${apiKey}` };
  const res = await fetch(`${svc.url}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'synthetic', input: { chunks: CHECKPOINT_STEPS, chunk_ms: 0 } }),
  });
  const { id } = (await res.json()) as { id: string };
  // The stream ends after the job's terminal event.
  const followed = watched
    ? fetch(`${svc.url}/v1/jobs/${id}/events`, { headers: { ...auth, accept: 'text/event-stream' } }).then((r) =>
        r.text(),
      )
    : Promise.resolve('');
  let spanMs = 0;
  await until(
    async () => {
      const { rows: r } = await db.query<{ ms: number | null }>(
        `SELECT extract(epoch FROM finished_at - started_at)::float8 * 1000 AS ms FROM jobs WHERE id = $1 AND status = 'COMPLETED'`,
        [id],
      );
      spanMs = r[0]?.ms ?? 0;
      return spanMs > 0;
    },
    120_000,
    DONE_POLL_MS,
  );
  if (watched && !(await followed).includes('COMPLETED')) throw new Error('the stream did not see the job complete');
  const to = await lsn(db);
  return {
    spanMs,
    walPerStep: (await walBytes(db, from)) / CHECKPOINT_STEPS,
    fpiPerStep: (await fpiBytes(db, from, to)) / CHECKPOINT_STEPS,
    from,
    to,
  };
}

/** Idle pickups of longhaul: POST answered (202) → the probe's chunk started, in the service process. */
async function longhaulPickup(db: pg.Pool, svc: ChildService, apiKey: string, samples: number): Promise<number[]> {
  const { post, close } = jobPoster(svc.url, apiKey, 1);
  const out: number[] = [];
  try {
    for (let i = 0; i < samples + PICKUP_WARMUP; i++) {
      const { id, accepted } = await post(PROBE_BODY);
      // The job's own pickup is left undisturbed: the first look for its end comes after it.
      await new Promise((r) => setTimeout(r, PICKUP_FIRST_LOOK_MS));
      const at = await probeStartedAt(db, id, 10_000);
      if (i >= PICKUP_WARMUP) out.push(Math.max(0, at - accepted));
      // The system idle again before the next job, as inProcessPickup leaves the peers.
      await new Promise((r) => setTimeout(r, PICKUP_IDLE_MS));
    }
  } finally {
    await close();
  }
  return out;
}

/** Idle pickups of an in-process queue: `submit` answered → handler started (the handler resolves `started`). */
async function inProcessPickup(
  samples: number,
  setup: (onStart: () => void) => Promise<{ submit(): Promise<void>; stop(): Promise<void> }>,
): Promise<number[]> {
  let started: (() => void) | undefined;
  const q = await setup(() => started?.());
  const out: number[] = [];
  try {
    for (let i = 0; i < samples + PICKUP_WARMUP; i++) {
      let at = 0;
      const ran = new Promise<void>((resolve) => {
        started = () => {
          at = now();
          resolve();
        };
      });
      await q.submit();
      const answered = now();
      await ran;
      if (i >= PICKUP_WARMUP) out.push(Math.max(0, at - answered));
      // Let the completion commit before the next job: the system is idle when the next is submitted.
      await new Promise((r) => setTimeout(r, PICKUP_IDLE_MS));
    }
  } finally {
    await q.stop();
  }
  return out;
}

function pickupRows(name: string, ours: number[], peers: Array<[string, number[]]>): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const [p, target] of [
    [50, 1.5],
    [99, 5],
  ] as const) {
    const v = percentile(ours, p);
    rows.push({
      name: `${name} pickup p${p}, idle (submit answered → handler started)`,
      value: v,
      unit: 'ms',
      target: `≤ ${target} ms`,
      met: v <= target,
    });
    for (const [peer, xs] of peers)
      rows.push({
        name: `  longhaul pickup p${p} ÷ ${peer}'s`,
        value: v,
        unit: 'ms',
        baselineName: `${peer} pickup p${p}`,
        baseline: percentile(xs, p),
      });
  }
  return rows;
}

interface SubmitRun {
  perSecond: number;
  /** Of the submitting process: the API, or the caller of addJob/send. */
  cpuUs: CpuPerJob;
  /** This process's CPU per job meanwhile: for longhaul, its HTTP clients' (the load it puts on the machine). */
  benchUs: number;
}

/** This process's CPU seconds so far (the caller of addJob and send() runs here). */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** `clients` loops of `op` for SUBMIT_SECONDS, with the CPU the submitting process (`cpu`) and Postgres spent per job. */
async function submitLoops(
  db: pg.Pool,
  clients: number,
  op: () => Promise<void>,
  cpu: () => number | undefined,
): Promise<SubmitRun> {
  const perJob = await cpuFrom(db, cpu);
  const bench0 = ownCpuSeconds();
  const run = await timedLoops(clients, SUBMIT_SECONDS, op);
  const benchUs = ((ownCpuSeconds() - bench0) * 1e6) / run.count;
  return { perSecond: run.perSecond, cpuUs: await perJob(run.count), benchUs };
}

/**
 * What longhaul's submissions cost this machine's cores: its HTTP clients (this process), the API and
 * Postgres, per job, at the rate reached and at the target's, three times `addJob`'s (`addJobRate`).
 */
function machineLoad(run: SubmitRun, addJobRate: number): string {
  if (run.cpuUs === undefined) return 'n/a';
  const perJob = run.benchUs + run.cpuUs.own + run.cpuUs.postgres;
  const cores = (rate: number) => ((perJob * rate) / 1e6).toFixed(2);
  return (
    `HTTP clients ${Math.round(run.benchUs)} + API ${Math.round(run.cpuUs.own)} + Postgres ` +
    `${Math.round(run.cpuUs.postgres)} = ${Math.round(perJob)} µs per job; ${cores(run.perSecond)} of ` +
    `${availableParallelism()} cores busy at ${whole(run.perSecond)} jobs/s, ${cores(3 * addJobRate)} at 3 × addJob's ${whole(3 * addJobRate)}`
  );
}

function cpuText(run: { cpuUs: CpuPerJob }): string {
  return run.cpuUs === undefined ? 'n/a' : `${Math.round(run.cpuUs.own)} + ${Math.round(run.cpuUs.postgres)} µs`;
}

export const peersBench: BenchModule = {
  title: 'peers: longhaul beside Graphile Worker, pg-boss work() and a raw SKIP LOCKED queue',
  async run(ctx) {
    const database = await ctx.createDatabase();
    const url = database.url;
    const db = new pg.Pool({ connectionString: url, max: 4 });
    const rows: BenchRow[] = [];
    const utilsPool = graphilePool(url, 64);
    const utils = await makeWorkerUtils({ pgPool: utilsPool, logger: quietGraphileLogger() });
    try {
      await db.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect');
      await utils.migrate();
      const env = { LONGHAUL_JOB_TYPES: PROBE_TYPES };

      // Drains.
      for (const slots of PARTS.has('drain') ? SLOTS : []) {
        const rounds: Array<{ ours: Drain; graphile: Drain; raw: Drain }> = [];
        for (let r = 0; r < ROUNDS; r++) {
          // Where the WAL went is read at once, before later drains' checkpoints recycle its segments.
          const logged = r === ROUNDS - 1;
          const longhaulRun = await longhaulDrain(db, url, slots, env, `d${slots}-${r}`);
          if (logged)
            ctx.log(
              `longhaul drain, ${slots} slots (last round), WAL by relation:\n    ${await walByRelation(db, longhaulRun.from, longhaulRun.to)}\n  by record type:\n    ${await walByRecord(db, longhaulRun.from, longhaulRun.to)}`,
            );
          const graphileRun = await graphileDrain(db, url, utils, slots);
          if (logged)
            ctx.log(
              `Graphile drain, ${slots} slots (last round), WAL by relation:\n    ${await walByRelation(db, graphileRun.from, graphileRun.to)}`,
            );
          rounds.push({ ours: longhaulRun, graphile: graphileRun, raw: await rawDrain(db, url, slots) });
        }
        const ours = middle(rounds.map((r) => r.ours));
        const graphile = middle(rounds.map((r) => r.graphile));
        const raw = middle(rounds.map((r) => r.raw));
        const byRound = (pick: (r: (typeof rounds)[number]) => Drain) =>
          rounds.map((r) => whole(pick(r).perSecond)).join(', ');
        ctx.log(
          `drain, ${slots} slots, jobs/s by round: longhaul ${byRound((r) => r.ours)}; ` +
            `Graphile Worker ${byRound((r) => r.graphile)}; raw ${byRound((r) => r.raw)}`,
        );
        // Each round's ratio beside its own peer's run, and the median of those.
        const pairedRatio = (peer: (r: (typeof rounds)[number]) => Drain) =>
          percentile(
            rounds.map((r) => r.ours.perSecond / peer(r).perSecond),
            50,
          );
        const toGraphile = pairedRatio((r) => r.graphile);
        const toRaw = pairedRatio((r) => r.raw);
        const capped = await longhaulDrain(
          db,
          url,
          slots,
          { ...env, LONGHAUL_TENANT_CONCURRENCY: String(slots) },
          `c${slots}`,
        );
        const boss = await bossDrain(db, url, slots);
        const name = `drain ${DRAIN_JOBS} tiny jobs, ${slots} slots`;
        ctx.log(
          `drain, ${slots} slots, CPU per job (process running the jobs + Postgres): longhaul ${cpuText(ours)}; ` +
            `tenant cap ${cpuText(capped)}; Graphile Worker ${cpuText(graphile)}; pg-boss work() ${cpuText(boss)}; raw ${cpuText(raw)}`,
        );
        if (ours.cpuUs !== undefined && graphile.cpuUs !== undefined)
          rows.push({
            name: `${name}: CPU per job, longhaul (worker process + Postgres) ÷ Graphile Worker (its process + Postgres)`,
            value: ours.cpuUs.own + ours.cpuUs.postgres,
            unit: 'µs',
            baselineName: 'Graphile Worker',
            baseline: graphile.cpuUs.own + graphile.cpuUs.postgres,
          });
        rows.push(
          {
            name: `${name}: longhaul (defaults) ÷ Graphile Worker (medians of ${ROUNDS} rounds)`,
            value: ours.perSecond,
            unit: 'jobs/s',
            baselineName: 'Graphile Worker',
            baseline: graphile.perSecond,
            ratio: toGraphile,
            target: 'ratio ≥ 1.0',
            met: toGraphile >= 1,
          },
          {
            name: `${name}: longhaul (defaults) ÷ raw SKIP LOCKED delete (medians of ${ROUNDS} rounds)`,
            value: ours.perSecond,
            unit: 'jobs/s',
            baselineName: `raw SKIP LOCKED (${slots} conns)`,
            baseline: raw.perSecond,
            ratio: toRaw,
            target: 'ratio ≥ 0.5',
            met: toRaw >= 0.5,
          },
          {
            name: `${name}: longhaul (defaults) ÷ pg-boss work()`,
            value: ours.perSecond,
            unit: 'jobs/s',
            baselineName: `pg-boss work() (batch ${slots})`,
            baseline: boss.perSecond,
          },
          {
            name: `${name}: longhaul (tenant cap = slots) ÷ Graphile Worker`,
            value: capped.perSecond,
            unit: 'jobs/s',
            baselineName: 'Graphile Worker',
            baseline: graphile.perSecond,
          },
          {
            name: `${name}: WAL per job, longhaul (defaults) ÷ Graphile Worker`,
            value: ours.walPerJob,
            unit: 'B',
            baselineName: 'Graphile Worker',
            baseline: graphile.walPerJob,
            target: '≤ 2,500 B',
            met: ours.walPerJob <= 2500,
          },
          {
            name: `${name}: WAL per job, longhaul (defaults) ÷ pg-boss work()`,
            value: ours.walPerJob,
            unit: 'B',
            baselineName: 'pg-boss work()',
            baseline: boss.walPerJob,
          },
          {
            name: `${name}: WAL per job, longhaul (defaults) ÷ raw SKIP LOCKED delete`,
            value: ours.walPerJob,
            unit: 'B',
            baselineName: 'raw SKIP LOCKED',
            baseline: raw.walPerJob,
          },
        );
      }

      // Pickup and checkpoints, against one idle service with its defaults.
      const tenant = await createTenant(db, `peers-idle-${randomUUID().slice(0, 6)}`);
      const svc = await startChildService('start', { DATABASE_URL: url, ...env });
      try {
        if (PARTS.has('pickup')) {
          const graphileQueue = (n: number) =>
            inProcessPickup(n, async (onStart) => {
              const pgPool = graphilePool(url, 10);
              const runner: Runner = await runGraphile({
                pgPool,
                concurrency: 8,
                noHandleSignals: true,
                pollInterval: 2000,
                logger: quietGraphileLogger(),
                taskList: { probe: async () => onStart() },
              });
              return {
                submit: async () => void (await utils.addJob('probe', {})),
                stop: async () => {
                  await runner.stop();
                  await pgPool.end();
                },
              };
            });
          const bossQueue = (n: number, round: number) =>
            inProcessPickup(n, async (onStart) => {
              const b = new PgBoss({
                connectionString: url,
                max: 4,
                supervise: false,
                schedule: false,
                useListenNotify: true,
              });
              await b.start();
              await b.createQueue(`peers-pickup-${round}`, { notify: true });
              await b.work(`peers-pickup-${round}`, { batchSize: 8 }, async () => onStart());
              return {
                submit: async () => void (await b.send(`peers-pickup-${round}`, {})),
                stop: () => b.stop({ graceful: false }),
              };
            });
          const rawQueue = (n: number) =>
            inProcessPickup(n, async (onStart) => {
              await db.query(
                'CREATE TABLE IF NOT EXISTS peers_raw_pickup (id bigserial PRIMARY KEY, payload jsonb NOT NULL)',
              );
              const listen = new pg.Client({ connectionString: url });
              const claim = new pg.Client({ connectionString: url });
              await listen.connect();
              await claim.connect();
              listen.on('notification', () => {
                void claim
                  .query(
                    `DELETE FROM peers_raw_pickup WHERE id = (SELECT id FROM peers_raw_pickup ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id`,
                  )
                  .then((r) => (r.rowCount === 1 ? onStart() : undefined));
              });
              await listen.query('LISTEN peers_raw');
              return {
                submit: async () =>
                  void (await db.query(
                    `WITH i AS (INSERT INTO peers_raw_pickup (payload) VALUES ('{}') RETURNING id) SELECT pg_notify('peers_raw', id::text) FROM i`,
                  )),
                stop: async () => {
                  await listen.end();
                  await claim.end();
                },
              };
            });
          const samples = Math.ceil(PICKUP_SAMPLES / ROUNDS);
          const ours: number[][] = [];
          const graphile: number[][] = [];
          const boss: number[][] = [];
          const raw: number[][] = [];
          for (let r = 0; r < ROUNDS; r++) {
            ours.push(await longhaulPickup(db, svc, tenant.api_key, samples));
            graphile.push(await graphileQueue(samples));
            boss.push(await bossQueue(samples, r));
            raw.push(await rawQueue(samples));
          }
          const p50s = (xs: number[][]) => xs.map((x) => percentile(x, 50).toFixed(2)).join(', ');
          // The p99 of 201 samples is their third slowest: the tail, round by round.
          const slowest = (xs: number[][]) =>
            xs
              .map((x) =>
                [...x]
                  .sort((a, b) => b - a)
                  .slice(0, 3)
                  .map((v) => v.toFixed(1))
                  .join(' '),
              )
              .join('; ');
          ctx.log(
            `pickup p50 by round (ms): longhaul ${p50s(ours)}; Graphile Worker ${p50s(graphile)}; ` +
              `pg-boss work() ${p50s(boss)}; raw ${p50s(raw)}`,
          );
          ctx.log(
            `pickup, three slowest by round (ms): longhaul ${slowest(ours)}; Graphile Worker ${slowest(graphile)}`,
          );
          rows.push(
            ...pickupRows('longhaul', ours.flat(), [
              ['Graphile Worker', graphile.flat()],
              ['pg-boss work() (notify)', boss.flat()],
              ['raw INSERT+NOTIFY → LISTEN → SKIP LOCKED claim', raw.flat()],
            ]),
          );
        }

        // One job of CHECKPOINT_STEPS empty chunks, beside CHECKPOINT_STEPS committed one-row UPDATEs.
        if (PARTS.has('checkpoint')) {
          await db.query('CREATE TABLE IF NOT EXISTS peers_plain (id int PRIMARY KEY, v jsonb)');
          await db.query(`INSERT INTO peers_plain VALUES (1, '{}') ON CONFLICT DO NOTHING`);
          // The drains' dead rows vacuumed now: an autovacuum of them during the job wrote up to 12 KB of
          // WAL per step, mostly full-page images of pg-boss's and job_events' pages, none of them the job's.
          await db.query('VACUUM');
          await db.query('CHECKPOINT');
          const plainFrom = await lsn(db);
          const t0 = now();
          for (let i = 0; i < CHECKPOINT_STEPS; i++)
            await db.query('UPDATE peers_plain SET v = $1 WHERE id = 1', [JSON.stringify({ done: i })]);
          const plainMs = (now() - t0) / CHECKPOINT_STEPS;
          const plainWal = (await walBytes(db, plainFrom)) / CHECKPOINT_STEPS;
          const updBefore = await jobsUpdates(db);
          const cp = await checkpointJob(db, svc, tenant.api_key, false);
          const updAfter = await jobsUpdates(db);
          // Read before the next job: its CHECKPOINT may let Postgres remove this job's WAL segments.
          ctx.log(
            `one job of ${CHECKPOINT_STEPS} empty chunks: jobs rows updated ${updAfter.upd - updBefore.upd}, HOT ${updAfter.hot - updBefore.hot}; WAL by relation:\n    ${await walByRelation(db, cp.from, cp.to)}\n  by record type:\n    ${await walByRecord(db, cp.from, cp.to)}`,
          );
          // Second: workers announce for a while after the last stream ends.
          const watched = await checkpointJob(db, svc, tenant.api_key, true);
          const spanMs = cp.spanMs;
          const cpWal = cp.walPerStep;
          const cpFpi = cp.fpiPerStep;
          rows.push(
            {
              name: `checkpoint of an empty chunk (one job of ${CHECKPOINT_STEPS}), time per step`,
              value: spanMs / CHECKPOINT_STEPS,
              unit: 'ms',
              baselineName: 'committed 1-row UPDATE, one after another',
              baseline: plainMs,
              target: 'ratio ≤ 2',
              met: spanMs / CHECKPOINT_STEPS <= 2 * plainMs,
            },
            {
              name: `checkpoint of an empty chunk (one job of ${CHECKPOINT_STEPS}), WAL per step`,
              value: cpWal,
              unit: 'B',
              baselineName: 'committed 1-row UPDATE',
              baseline: plainWal,
              target: '≤ 500 B',
              met: cpWal <= 500,
            },
            {
              name: `checkpoint of an empty chunk (one job of ${CHECKPOINT_STEPS}), WAL per step without full-page images`,
              value: cpWal - cpFpi,
              unit: 'B',
              baselineName: 'committed 1-row UPDATE',
              baseline: plainWal,
            },
            {
              name: `  the same with a stream following the job (each checkpoint announced), time per step`,
              value: watched.spanMs / CHECKPOINT_STEPS,
              unit: 'ms',
              baselineName: 'committed 1-row UPDATE, one after another',
              baseline: plainMs,
            },
            {
              name: `  the same with a stream following the job, WAL per step without full-page images`,
              value: watched.walPerStep - watched.fpiPerStep,
              unit: 'B',
              baselineName: 'committed 1-row UPDATE',
              baseline: plainWal,
            },
          );
        }
      } finally {
        await svc.stop();
      }

      // Submission.
      if (!PARTS.has('submit')) return rows;
      const api = await startChildService('api', { DATABASE_URL: url, ...env });
      const boss = new PgBoss({ connectionString: url, max: 64, supervise: false, schedule: false });
      await boss.start();
      await boss.createQueue('peers-send');
      try {
        for (const clients of SUBMIT_CLIENTS) {
          const http = new HttpPool(api.url, { connections: clients });
          const post = async () => {
            const res = await http.request({
              path: '/v1/jobs',
              method: 'POST',
              headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' },
              body: TINY_BODY,
            });
            await res.body.dump();
            if (res.statusCode !== 202) throw new Error(`POST answered ${res.statusCode}`);
          };
          await timedLoops(clients, 0.5, post);
          const oursRun = await submitLoops(db, clients, post, () => processCpuSeconds(api.child.pid));
          const ours = oursRun.perSecond;
          await http.close();
          const add = async () => void (await utils.addJob('peers_submit', { n: 1 }));
          await timedLoops(clients, 0.5, add);
          const graphileRun = await submitLoops(db, clients, add, ownCpuSeconds);
          const graphile = graphileRun.perSecond;
          const send = async () => void (await boss.send('peers-send', { n: 1 }));
          await timedLoops(clients, 0.5, send);
          const sentRun = await submitLoops(db, clients, send, ownCpuSeconds);
          const sent = sentRun.perSecond;
          ctx.log(
            `submit, ${clients} clients, CPU per job (submitting process + Postgres): longhaul API ${cpuText(oursRun)}; ` +
              `Graphile addJob ${cpuText(graphileRun)}; pg-boss send() ${cpuText(sentRun)}`,
          );
          ctx.log(`submit, ${clients} clients, longhaul on this machine: ${machineLoad(oursRun, graphile)}`);
          rows.push(
            {
              name: `submit, ${clients} clients: longhaul POST /v1/jobs ÷ Graphile addJob`,
              value: ours,
              unit: 'jobs/s',
              baselineName: 'Graphile addJob',
              baseline: graphile,
              target: 'ratio ≥ 3',
              met: ours >= 3 * graphile,
            },
            {
              name: `submit, ${clients} clients: longhaul POST /v1/jobs ÷ pg-boss send()`,
              value: ours,
              unit: 'jobs/s',
              baselineName: 'pg-boss send()',
              baseline: sent,
              target: 'ratio ≥ 1.5',
              met: ours >= 1.5 * sent,
            },
          );
          if (oursRun.cpuUs !== undefined && sentRun.cpuUs !== undefined && graphileRun.cpuUs !== undefined)
            rows.push(
              {
                name: `submit, ${clients} clients: CPU per job, longhaul (API process + Postgres) ÷ pg-boss send() (caller + Postgres)`,
                value: oursRun.cpuUs.own + oursRun.cpuUs.postgres,
                unit: 'µs',
                baselineName: 'pg-boss send()',
                baseline: sentRun.cpuUs.own + sentRun.cpuUs.postgres,
              },
              {
                name: `submit, ${clients} clients: CPU per job, longhaul ÷ Graphile addJob (caller + Postgres)`,
                value: oursRun.cpuUs.own + oursRun.cpuUs.postgres,
                unit: 'µs',
                baselineName: 'Graphile addJob',
                baseline: graphileRun.cpuUs.own + graphileRun.cpuUs.postgres,
              },
            );
        }
      } finally {
        await boss.stop({ graceful: false });
        await api.stop();
      }
      return rows;
    } finally {
      await utils.release();
      await utilsPool.end();
      await db.end();
      await database.drop();
    }
  },
};
