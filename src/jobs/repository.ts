/**
 * Reads of the jobs table: a job, pages of jobs, what the console shows, the dead-letter queue and what
 * the monitor's alerts look for. Its writes are src/jobs/lifecycle.ts's.
 */
import type { Queryable } from '../db/pool.ts';
import type { Json } from '../../packages/sdk/src/index.ts';
import { JOB_COLUMNS, type JobRow } from './model.ts';
import { JOB_PHASES, type JobStatus } from './state.ts';

/** Channel on which every job event is announced as `jobId:seq` (the payload stays small). */
export const JOB_EVENTS_CHANNEL = 'longhaul_job_events';

/**
 * Channel between the realtime hubs and the workers' announcers (src/jobs/events-publisher.ts): a hub that
 * follows a job says `follow` (when it begins, every FOLLOWING_HEARTBEAT_MS, and in answer to `ask`); an
 * announcer that has just begun listening says `ask`.
 */
export const STREAM_FOLLOWERS_CHANNEL = 'longhaul_stream_followers';

/** How often a hub that follows a job says so again; announcers stop announcing after three missed. */
export const FOLLOWING_HEARTBEAT_MS = 10_000;

/** Channel that tells workers a running job was asked to stop; payload is the job id. */
export const CANCEL_CHANNEL = 'longhaul_job_cancel';

export async function getJob(db: Queryable, tenantId: string, id: string): Promise<JobRow | undefined> {
  const { rows } = await db.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2`, [
    id,
    tenantId,
  ]);
  return rows[0];
}

/** Which jobs of a tenant a list or a bulk action takes; every field narrows it. */
export interface JobFilter {
  status?: JobStatus | undefined;
  type?: string | undefined;
  /** Only jobs created at or after this time. */
  createdFrom?: Date | undefined;
  /** Only jobs created before this time. */
  createdTo?: Date | undefined;
  /** true: only PENDING jobs waiting for a scheduled time still ahead; false: only the others. */
  scheduled?: boolean | undefined;
  priority?: number | undefined;
  scheduleId?: string | undefined;
  /** Only jobs whose metadata contains this object (`metadata @> …`, served by the jobs_metadata index). */
  metadata?: Record<string, Json> | undefined;
}

/**
 * The ids of the RUNNING jobs: running_jobs (sql/100), as small as the cluster's slots, read whole, so
 * that their jobs are found by primary key. A plan made while the tables are small (a generic one, kept)
 * must not walk the jobs to find them. Read in the order of its key: an index scan marks the entries of
 * deleted rows dead as it passes them, where a bitmap scan of a table that every claim and every end of
 * a job churns would read them all again at each look until the next vacuum.
 */
const RUNNING_IDS_SQL = 'ARRAY(SELECT job_id FROM running_jobs ORDER BY job_id)';

/** The condition that the job `j` is RUNNING (RUNNING_IDS_SQL). */
export const RUNNING_SQL = `j.id = ANY (${RUNNING_IDS_SQL}) AND j.status = 'RUNNING'`;

/**
 * The condition that a job has the status `s` (SQL text: a literal, or a parameter planned with its
 * value), in the form the indexes serve. No index names `status`, so that a claim (PENDING → RUNNING)
 * changes no indexed column and is a HOT update (sql/100): `phase`, indexed in its place, is the status
 * with PENDING and RUNNING both ACTIVE, and the RUNNING jobs are found through RUNNING_IDS_SQL rather
 * than by walking a backlog of PENDING jobs.
 */
export function statusIsSql(s: string): string {
  return `(status = ${s} AND phase = CASE WHEN ${s} IN ('PENDING', 'RUNNING') THEN 'ACTIVE' ELSE ${s} END
           AND (${s} <> 'RUNNING' OR id = ANY (${RUNNING_IDS_SQL})))`;
}

/** The JobFilter's conditions on `jobs`, over parameters $2–$10 (jobFilterValues). */
const FILTER_SQL = `($2::text IS NULL OR ${statusIsSql('$2')})
        AND ($3::text IS NULL OR type = $3)
        AND ($4::timestamptz IS NULL OR created_at >= $4)
        AND ($5::timestamptz IS NULL OR created_at < $5)
        AND ($6::boolean IS NULL OR $6 = (phase = 'ACTIVE' AND status = 'PENDING' AND scheduled_for IS NOT NULL AND scheduled_for > now()))
        AND ($7::int IS NULL OR priority = $7)
        AND ($8::uuid IS NULL OR schedule_id = $8)
        AND ($9::jsonb IS NULL OR metadata @> $9)`;

function filterValues(f: JobFilter): unknown[] {
  return [
    f.status ?? null,
    f.type ?? null,
    f.createdFrom ?? null,
    f.createdTo ?? null,
    f.scheduled ?? null,
    f.priority ?? null,
    f.scheduleId ?? null,
    f.metadata === undefined ? null : JSON.stringify(f.metadata),
  ];
}

export interface ListFilter extends JobFilter {
  limit: number;
  /** Exclusive keyset position: the (created_at, id) of the last job of the previous page. */
  after?: { createdAt: string; id: string } | undefined;
}

export interface JobPage {
  rows: JobRow[];
  /** Position of the last row, when there may be more. */
  next: { createdAt: string; id: string } | null;
}

/**
 * One tenant's page, as a subquery over $1 = the tenant; the filters are $2..$9, the position $10–$11,
 * the page size $12. `phase`: only the jobs in it (each phase's jobs are in creation order in
 * jobs_tenant_phase_created); none: every phase's.
 */
const PHASE_PAGE_SQL = (tenant: string, phase?: string) => `SELECT ${JOB_COLUMNS},
            to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key
       FROM jobs
      WHERE tenant_id = ${tenant}${phase === undefined ? '' : ` AND phase = '${phase}'`}
        AND ${FILTER_SQL}
        AND ($10::timestamptz IS NULL OR (created_at, id) < ($10::timestamptz, $11::uuid))
      ORDER BY created_at DESC, id DESC
      LIMIT $12`;

/**
 * One tenant's page. By status, through `phase`, or by type, through jobs_tenant_type_created, it is read
 * in order from one index; otherwise each phase's page is read in order and the pages merged (no index
 * orders all of a tenant's jobs: one more index entry for every job's every non-HOT update).
 */
function tenantPageSql(tenant: string, f: JobFilter): string {
  if (f.status !== undefined || f.type !== undefined) return PHASE_PAGE_SQL(tenant);
  return `SELECT * FROM (${JOB_PHASES.map((phase) => `(${PHASE_PAGE_SQL(tenant, phase)})`).join(' UNION ALL ')}) p
      ORDER BY created_at DESC, id DESC LIMIT $12`;
}

/**
 * Newest first; keyset pagination on (created_at, id), so pages are stable under inserts. Without a
 * tenant (the operator console's admin), each tenant's page is read from its own index and the pages
 * merged, so no index over every tenant's jobs is needed.
 */
export async function listJobs(db: Queryable, tenantId: string | undefined, f: ListFilter): Promise<JobPage> {
  const text =
    tenantId === undefined
      ? `SELECT p.* FROM tenants t CROSS JOIN LATERAL (${tenantPageSql('t.id', f)}) p
          WHERE $1::uuid IS NULL ORDER BY p.created_at DESC, p.id DESC LIMIT $12`
      : tenantPageSql('$1', f);
  const { rows } = await db.query<JobRow & { created_key: string }>(text, [
    tenantId ?? null,
    ...filterValues(f),
    f.after?.createdAt ?? null,
    f.after?.id ?? null,
    f.limit + 1,
  ]);
  const more = rows.length > f.limit;
  const page = more ? rows.slice(0, f.limit) : rows;
  const last = page.at(-1);
  return {
    rows: page.map(({ created_key: _k, ...r }) => r),
    next: more && last !== undefined ? { createdAt: last.created_key, id: last.id } : null,
  };
}

/** The tenant a job belongs to (for an operator who may see every tenant), or undefined. */
export async function tenantOfJob(db: Queryable, id: string): Promise<string | undefined> {
  const { rows } = await db.query<{ tenant_id: string }>('SELECT tenant_id FROM jobs WHERE id = $1', [id]);
  return rows[0]?.tenant_id;
}

export interface CheckpointInfo {
  checkpoint_at: Date | null;
  checkpoint_cursor: Json | null;
  /** Size of the checkpoint's state as stored, in bytes. */
  state_bytes: number | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  cancel_requested_at: Date | null;
  dead_lettered_at: Date | null;
}

/** A job's last checkpoint and lease, as the console's job page shows them. */
export async function checkpointOf(db: Queryable, tenantId: string, id: string): Promise<CheckpointInfo | undefined> {
  const { rows } = await db.query<CheckpointInfo>(
    `SELECT checkpoint_at, checkpoint_cursor, pg_column_size(checkpoint_state) AS state_bytes, lease_owner,
            lease_expires_at, cancel_requested_at, dead_lettered_at
       FROM jobs WHERE id = $1 AND tenant_id = $2`,
    [id, tenantId],
  );
  return rows[0];
}

/**
 * A tenant's active jobs matching the filter that a cancellation takes, oldest first, at most `limit`,
 * locked: PENDING ones, and RUNNING ones not yet asked to stop.
 */
export async function lockActiveMatching(
  db: Queryable,
  tenantId: string,
  f: JobFilter,
  limit: number,
): Promise<Array<{ id: string; status: JobStatus }>> {
  const { rows } = await db.query<{ id: string; status: JobStatus }>(
    `SELECT id, status FROM jobs
      WHERE tenant_id = $1 AND ${FILTER_SQL}
        AND phase = 'ACTIVE' AND (status = 'PENDING' OR (status = 'RUNNING' AND cancel_requested_at IS NULL))
      ORDER BY created_at, id
      LIMIT $10 FOR UPDATE`,
    [tenantId, ...filterValues(f), limit],
  );
  return rows;
}

/** A RUNNING job that has not checkpointed for longer than its type allows. */
export interface StalledJob {
  id: string;
  type: string;
  tenant_id: string;
  /** Seconds since its last checkpoint. */
  idle: number;
  processed: number;
}

/**
 * RUNNING jobs with a live lease (their worker is alive) that have not checkpointed for longer than
 * their type's stall time, for the stalled-job alert; types not given are not checked.
 */
export async function stalledJobs(
  db: Queryable,
  stallAfter: Array<{ type: string; seconds: number }>,
): Promise<StalledJob[]> {
  const { rows } = await db.query<StalledJob>(
    `SELECT j.id, j.type, j.tenant_id, extract(epoch FROM now() - j.updated_at)::float8 AS idle, j.processed
       FROM jobs j JOIN unnest($1::text[], $2::float8[]) AS t(type, secs) ON t.type = j.type
      WHERE ${RUNNING_SQL} AND j.lease_expires_at > now() AND j.updated_at < now() - make_interval(secs => t.secs)`,
    [stallAfter.map((s) => s.type), stallAfter.map((s) => s.seconds)],
  );
  return rows;
}

/**
 * PENDING jobs that have waited for a worker longer than `seconds` since they could start, for the
 * pending-too-long alert: how many, the oldest, and its wait in seconds.
 */
export async function longPending(
  db: Queryable,
  seconds: number,
): Promise<{ n: number; oldest: string | null; waited: number | null }> {
  const { rows } = await db.query<{ n: number; oldest: string | null; waited: number | null }>(
    `SELECT count(*)::int AS n, (array_agg(id ORDER BY updated_at))[1]::text AS oldest,
            max(extract(epoch FROM now() - greatest(updated_at, scheduled_for)))::float8 AS waited
       FROM jobs WHERE phase = 'ACTIVE' AND status = 'PENDING' AND greatest(updated_at, scheduled_for) < now() - make_interval(secs => $1)`,
    [seconds],
  );
  return rows[0] ?? { n: 0, oldest: null, waited: null };
}

export interface DeadLetter {
  job: JobRow;
  deadLetteredAt: Date;
}

export interface DeadLetterFilter {
  type?: string | undefined;
  /** Only jobs dead-lettered at or after this time. */
  since?: Date | undefined;
  /** Only jobs dead-lettered before this time. */
  until?: Date | undefined;
  limit: number;
  /** Exclusive keyset position (dead_lettered_at, id) of the previous page's last row. */
  after?: { at: string; id: string } | undefined;
}

export async function listDeadLetters(
  db: Queryable,
  tenantId: string,
  f: DeadLetterFilter,
): Promise<{ rows: DeadLetter[]; next: { at: string; id: string } | null }> {
  const { rows } = await db.query<JobRow & { dead_lettered_at: Date; at_key: string }>(
    `SELECT ${JOB_COLUMNS}, dead_lettered_at,
            to_char(dead_lettered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_key
       FROM jobs
      WHERE tenant_id = $1 AND dead_lettered_at IS NOT NULL AND status = 'FAILED'
        AND ($2::text IS NULL OR type = $2)
        AND ($3::timestamptz IS NULL OR dead_lettered_at >= $3)
        AND ($4::timestamptz IS NULL OR dead_lettered_at < $4)
        AND ($5::timestamptz IS NULL OR (dead_lettered_at, id) < ($5::timestamptz, $6::uuid))
      ORDER BY dead_lettered_at DESC, id DESC
      LIMIT $7`,
    [tenantId, f.type ?? null, f.since ?? null, f.until ?? null, f.after?.at ?? null, f.after?.id ?? null, f.limit + 1],
  );
  const more = rows.length > f.limit;
  const page = more ? rows.slice(0, f.limit) : rows;
  const last = page.at(-1);
  return {
    rows: page.map(({ dead_lettered_at, at_key: _k, ...job }) => ({ job, deadLetteredAt: dead_lettered_at })),
    next: more && last !== undefined ? { at: last.at_key, id: last.id } : null,
  };
}

/** The job, locked for the caller's transaction (a replay). */
export async function lockJobOf(db: Queryable, tenantId: string, id: string): Promise<JobRow | undefined> {
  const { rows } = await db.query<JobRow>(
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
    [id, tenantId],
  );
  return rows[0];
}

/** A tenant's dead-lettered jobs matching the filter, oldest first, at most `limit`, locked (skipping those locked elsewhere). */
export async function lockDeadLetters(
  db: Queryable,
  tenantId: string,
  f: Pick<DeadLetterFilter, 'type' | 'since' | 'until' | 'limit'>,
): Promise<Array<{ id: string }>> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM jobs
      WHERE tenant_id = $1 AND dead_lettered_at IS NOT NULL AND status = 'FAILED'
        AND ($2::text IS NULL OR type = $2)
        AND ($3::timestamptz IS NULL OR dead_lettered_at >= $3)
        AND ($4::timestamptz IS NULL OR dead_lettered_at < $4)
      ORDER BY dead_lettered_at, id LIMIT $5 FOR UPDATE SKIP LOCKED`,
    [tenantId, f.type ?? null, f.since ?? null, f.until ?? null, f.limit],
  );
  return rows;
}

/** A job newly in the dead-letter queue, as the dead-letter alert tells of it. */
export interface DeadLettered {
  id: string;
  tenant_id: string;
  type: string;
  attempts: number;
  error: Json | null;
  /** dead_lettered_at to the microsecond, as text: the keyset position of the next read. */
  at_key: string;
}

/**
 * Jobs dead-lettered after the keyset position `after` (dead_lettered_at, id) moved back by
 * `rewindSeconds` (from now when there is none), across tenants, oldest first, through
 * jobs_dead_lettered_at (sql/030): what the monitor's dead-letter alert pass reads.
 */
export async function deadLetteredAfter(
  db: Queryable,
  after: { at: string; id: string } | undefined,
  rewindSeconds: number,
  limit: number,
): Promise<DeadLettered[]> {
  const { rows } = await db.query<DeadLettered>(
    `SELECT id, tenant_id, type, attempts, error,
            to_char(dead_lettered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_key
       FROM jobs
      WHERE dead_lettered_at IS NOT NULL AND status = 'FAILED'
        AND (dead_lettered_at, id) > (coalesce($1::timestamptz, now()) - make_interval(secs => $3),
                                      coalesce($2::uuid, '00000000-0000-0000-0000-000000000000'))
      ORDER BY dead_lettered_at, id LIMIT $4`,
    [after?.at ?? null, after?.id ?? null, rewindSeconds, limit],
  );
  return rows;
}

/** Which of `ids` are still in the dead-letter queue (not replayed, not deleted by retention). */
export async function stillDeadLettered(db: Queryable, ids: readonly string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND dead_lettered_at IS NOT NULL AND status = 'FAILED'`,
    [ids],
  );
  return new Set(rows.map((r) => r.id));
}
