/**
 * The numbers of the console's overview, each cheap whatever the size of the jobs table: nothing here
 * counts over the whole table. Active jobs (PENDING, RUNNING) are counted exactly through their
 * indexes up to a cap; past the cap, and for finished jobs and types always, the figure is the
 * planner's estimate from the table's statistics (`estimated: true`). The per-minute chart reads only
 * the last hour's finished jobs, through the jobs_finished index.
 */
import type { Queryable } from '../db/pool.ts';
import { statusIsSql } from './repository.ts';
import { JOB_STATUSES, type JobStatus } from './state.ts';

/** Exact counts stop here; above it the estimate is shown. */
export const EXACT_COUNT_CAP = 10_000;

/**
 * The console overview's exact counts stop lower: a page view should not read a large backlog row by
 * row (bench/console.ts), and past a thousand the estimate says as much to an operator.
 */
export const OVERVIEW_COUNT_CAP = 1_000;

export interface Figure {
  n: number;
  /** True when `n` is the planner's estimate rather than an exact count. */
  estimated: boolean;
}

export interface JobsOverview {
  byStatus: Record<JobStatus, Figure>;
  byType: Array<{ type: string } & Figure>;
  /** Finished jobs per minute over the last hour, oldest minute first (60 entries). */
  perMinute: Array<{ minute: Date; completed: number; failed: number }>;
  /** When the longest-waiting PENDING job became pending, if any. */
  oldestPendingSince: Date | null;
  deadJobs: Figure;
}

/** The planner's row estimate for a query (EXPLAIN, no execution). */
async function estimate(db: Queryable, sql: string, params: unknown[]): Promise<number> {
  const { rows } = await db.query<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>(
    `EXPLAIN (FORMAT JSON) ${sql}`,
    params,
  );
  return Math.round(rows[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'] ?? 0);
}

/** Exact up to the cap (an index-bounded scan), else the estimate. */
async function cappedCount(db: Queryable, sql: string, params: unknown[], cap = EXACT_COUNT_CAP): Promise<Figure> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql} LIMIT ${cap + 1}) s`, params);
  const n = rows[0]?.n ?? 0;
  if (n <= cap) return { n, estimated: false };
  return { n: Math.max(cap + 1, await estimate(db, sql, params)), estimated: true };
}

const ACTIVE: ReadonlySet<JobStatus> = new Set(['PENDING', 'RUNNING']);

/** The overview of one tenant's jobs, or of every tenant's (undefined). `types` are the registered job types. */
export async function jobsOverview(
  db: Queryable,
  tenantId: string | undefined,
  types: readonly string[],
): Promise<JobsOverview> {
  const scope = tenantId === undefined ? '' : 'tenant_id = $1 AND ';
  const params = tenantId === undefined ? [] : [tenantId];
  // Independent reads, each on a connection of its own when `db` is a pool: the page waits for the
  // slowest one, not for their sum.
  const statusFigures = Promise.all(
    JOB_STATUSES.map(async (status): Promise<[JobStatus, Figure]> => {
      const sql = `SELECT 1 FROM jobs WHERE ${scope}${statusIsSql(`'${status}'`)}`;
      return [
        status,
        ACTIVE.has(status)
          ? await cappedCount(db, sql, params, OVERVIEW_COUNT_CAP)
          : { n: await estimate(db, sql, params), estimated: true },
      ];
    }),
  );
  const typeFigures = Promise.all(
    types.map(async (type) => ({
      type,
      n: await estimate(db, `SELECT 1 FROM jobs WHERE ${scope}type = $${params.length + 1}`, [...params, type]),
      estimated: true,
    })),
  );
  const perMinute = db.query<{ minute: Date; completed: number; failed: number }>(
    `WITH f AS (
       SELECT date_trunc('minute', finished_at) AS minute,
              count(*) FILTER (WHERE status = 'COMPLETED')::int AS completed,
              count(*) FILTER (WHERE status = 'FAILED')::int AS failed
         FROM jobs
        WHERE ${scope}finished_at >= date_trunc('minute', now()) - interval '59 minutes'
        GROUP BY 1)
     SELECT m.minute, coalesce(f.completed, 0) AS completed, coalesce(f.failed, 0) AS failed
       FROM generate_series(date_trunc('minute', now()) - interval '59 minutes', date_trunc('minute', now()), interval '1 minute') AS m(minute)
       LEFT JOIN f ON f.minute = m.minute
      ORDER BY m.minute`,
    params,
  );
  // One probe of each tenant's active jobs in creation order (jobs_active): no index orders every tenant's pending jobs.
  const oldestPending = db.query<{ since: Date | null }>(
    tenantId === undefined
      ? `SELECT min(p.since) AS since FROM tenants t CROSS JOIN LATERAL (
           SELECT created_at AS since FROM jobs WHERE tenant_id = t.id AND phase = 'ACTIVE' AND status = 'PENDING'
            ORDER BY created_at LIMIT 1) p`
      : `SELECT min(created_at) AS since FROM jobs WHERE tenant_id = $1 AND phase = 'ACTIVE' AND status = 'PENDING'`,
    params,
  );
  // A replay clears dead_lettered_at, so it marks exactly the dead jobs, and the count reads the
  // dead-letter indexes alone (a status condition beside it makes the planner combine two whole bitmaps).
  const dead = cappedCount(
    db,
    `SELECT 1 FROM jobs WHERE ${scope}dead_lettered_at IS NOT NULL`,
    params,
    OVERVIEW_COUNT_CAP,
  );
  const [statuses, byType, { rows: minutes }, { rows: oldest }, deadJobs] = await Promise.all([
    statusFigures,
    typeFigures,
    perMinute,
    oldestPending,
    dead,
  ]);
  const byStatus = Object.fromEntries(statuses) as Record<JobStatus, Figure>;
  return { byStatus, byType, perMinute: minutes, oldestPendingSince: oldest[0]?.since ?? null, deadJobs };
}

/** What Prometheus is shown of the jobs table at each scrape (src/jobs/metrics.ts). */
export interface QueueFigures {
  /** Jobs by status and type. */
  byStatusType: Array<{ status: JobStatus; type: string; n: number }>;
  /** Per status, true when its figures are the planner's estimates rather than exact counts. */
  estimated: Record<JobStatus, boolean>;
  /** How long the longest-waiting PENDING job has waited, in seconds (0 when none waits). */
  oldestPendingSeconds: number;
  deadJobs: Figure;
}

/**
 * The queue's figures at the cost of a few index-bounded reads and planner estimates, whatever the
 * table's size. Active jobs are read through the jobs_active index (the RUNNING ones through running_jobs) up to the cap and split by type
 * exactly; past the cap, and for finished jobs always, each (status, type) is the planner's estimate.
 */
export async function queueFigures(db: Queryable, types: readonly string[]): Promise<QueueFigures> {
  const byStatusType: QueueFigures['byStatusType'] = [];
  const estimated = {} as Record<JobStatus, boolean>;
  for (const status of JOB_STATUSES) {
    if (ACTIVE.has(status)) {
      const { rows } = await db.query<{ type: string; n: number }>(
        `SELECT type, count(*)::int AS n FROM (SELECT type FROM jobs WHERE ${statusIsSql('$1::text')} LIMIT ${EXACT_COUNT_CAP + 1}) s
          GROUP BY type ORDER BY type`,
        [status],
      );
      if (rows.reduce((sum, r) => sum + r.n, 0) <= EXACT_COUNT_CAP) {
        const seen = new Set(rows.map((r) => r.type));
        byStatusType.push(...rows.map((r) => ({ status, ...r })));
        for (const type of types) if (!seen.has(type)) byStatusType.push({ status, type, n: 0 });
        estimated[status] = false;
        continue;
      }
    }
    for (const type of types) {
      const n = await estimate(db, `SELECT 1 FROM jobs WHERE ${statusIsSql(`'${status}'`)} AND type = $1`, [type]);
      byStatusType.push({ status, type, n });
    }
    estimated[status] = true;
  }
  const oldestPendingSeconds = await longestWait(db);
  // dead_lettered_at alone marks the dead jobs (a replay clears it): the count reads the
  // jobs_dead_lettered_at index, where a status condition beside it combines two whole bitmaps.
  const deadJobs = await cappedCount(db, `SELECT 1 FROM jobs WHERE dead_lettered_at IS NOT NULL`, []);
  return { byStatusType, estimated, oldestPendingSeconds, deadJobs };
}

/** Due PENDING jobs (one delayed into the future is not waiting yet) of the tenant `$1`. */
const DUE_PENDING = `tenant_id = $1 AND phase = 'ACTIVE' AND status = 'PENDING' AND (scheduled_for IS NULL OR scheduled_for <= now())`;
/** How many of each tenant's oldest pending jobs longestWait reads before it knows the answer. */
const WAIT_PROBE = 16;

/**
 * Seconds the longest-waiting due PENDING job has waited, since greatest(updated_at, scheduled_for).
 * No job waits since before its creation, so each tenant's pending jobs are read in creation order
 * (jobs_active, by tenant and creation) and the read can stop at the first job created after the
 * longest wait seen: a few rows per tenant instead of a sort of the whole backlog. A tenant whose first
 * rows do not settle it (jobs created long ago and queued again recently) is read in full. 0: none waits.
 */
async function longestWait(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ tenant: string; created_at: Date; since: Date; waited: number }>(
    `SELECT t.id AS tenant, p.created_at, p.since, extract(epoch FROM now() - p.since)::float8 AS waited
       FROM tenants t CROSS JOIN LATERAL (
         SELECT created_at, greatest(updated_at, scheduled_for) AS since FROM jobs
          WHERE ${DUE_PENDING.replace('$1', 't.id')} ORDER BY created_at LIMIT ${WAIT_PROBE}) p`,
  );
  const byTenant = Map.groupBy(rows, (r) => r.tenant);
  let longest = 0;
  for (const [tenant, read] of byTenant) {
    const first = read.reduce((a, r) => (r.since < a.since ? r : a));
    const last = read.at(-1);
    let waited = first.waited;
    if (read.length === WAIT_PROBE && last !== undefined && last.created_at < first.since) {
      const { rows: all } = await db.query<{ waited: number | null }>(
        `SELECT extract(epoch FROM now() - min(greatest(updated_at, scheduled_for)))::float8 AS waited
           FROM jobs WHERE ${DUE_PENDING}`,
        [tenant],
      );
      waited = all[0]?.waited ?? waited;
    }
    longest = Math.max(longest, waited);
  }
  return longest;
}
