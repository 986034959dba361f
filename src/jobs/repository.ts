/** SQL of the jobs and job_events tables (reads, listing, cancellation, status events). */
import type { Queryable } from '../db/pool.ts';
import type { Json } from '../../packages/sdk/src/index.ts';
import { JOB_COLUMNS, type JobRow } from './model.ts';
import { sourcesOf, type JobStatus } from './state.ts';
import { outboxInsertSql } from '../webhooks/outbox.ts';

/** Channel on which every job event is announced as `jobId:seq` (the payload stays small). */
export const JOB_EVENTS_CHANNEL = 'longhaul_job_events';

/** The data of a `status` event, from the jobs row after its update (shared by every statement that moves a status). */
export const STATUS_EVENT_DATA_SQL = `jsonb_build_object('status', status, 'attempts', attempts, 'error', error, 'result', result)`;

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

/** The JobFilter's conditions on `jobs`, over parameters $2–$10 (jobFilterValues). */
const FILTER_SQL = `($2::text IS NULL OR status = $2)
        AND ($3::text IS NULL OR type = $3)
        AND ($4::timestamptz IS NULL OR created_at >= $4)
        AND ($5::timestamptz IS NULL OR created_at < $5)
        AND ($6::boolean IS NULL OR $6 = (status = 'PENDING' AND scheduled_for IS NOT NULL AND scheduled_for > now()))
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

/** One tenant's page, as a subquery over $1 = the tenant; the filters are $2..$9, the position $10–$11, the page size $12. */
const TENANT_PAGE_SQL = (tenant: string) => `SELECT ${JOB_COLUMNS},
            to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key
       FROM jobs
      WHERE tenant_id = ${tenant}
        AND ${FILTER_SQL}
        AND ($10::timestamptz IS NULL OR (created_at, id) < ($10::timestamptz, $11::uuid))
      ORDER BY created_at DESC, id DESC
      LIMIT $12`;

/**
 * Newest first; keyset pagination on (created_at, id), so pages are stable under inserts. Without a
 * tenant (the operator console's admin), each tenant's page is read from its own index and the pages
 * merged, so no index over every tenant's jobs is needed.
 */
export async function listJobs(db: Queryable, tenantId: string | undefined, f: ListFilter): Promise<JobPage> {
  const text =
    tenantId === undefined
      ? `SELECT p.* FROM tenants t CROSS JOIN LATERAL (${TENANT_PAGE_SQL('t.id')}) p
          WHERE $1::uuid IS NULL ORDER BY p.created_at DESC, p.id DESC LIMIT $12`
      : TENANT_PAGE_SQL('$1');
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
 * Moves a job to `to` if the state machine allows it from its current status, appends a `status`
 * event and announces it, in one statement. A terminal status also writes the job's webhook delivery
 * (the outbox, src/webhooks/outbox.ts) in that statement. Returns the updated row with its event's
 * `event_seq`, or undefined if the move was not legal.
 *
 * `announce: false` leaves the announcement to the caller, who sends it after the commit
 * (src/jobs/events-publisher.ts): a notifying transaction holds Postgres's global notify lock through
 * its commit's WAL flush, which serialises busy writers. (Default: true, announced on commit)
 */
export async function transition(
  db: Queryable,
  jobId: string,
  to: JobStatus,
  set: { result?: Json; error?: Json; extraSql?: string; announce?: boolean } = {},
): Promise<(JobRow & { event_seq: number }) | undefined> {
  const terminal = to === 'COMPLETED' || to === 'FAILED' || to === 'CANCELLED';
  const announce =
    set.announce === false ? '' : `, pg_notify('${JOB_EVENTS_CHANNEL}', id::text || ':' || event_seq::text)`;
  const { rows } = await db.query<JobRow & { event_seq: number }>({
    // The worker's form (fixed text, announced later) runs many times a second: a prepared statement
    // (planned once per connection; planning this statement costs more than running it).
    name: set.announce === false && set.extraSql === undefined ? 'longhaul_transition_quiet' : undefined,
    text: `WITH u AS (
       UPDATE jobs SET status = $2, updated_at = now(), event_seq = event_seq + 1,
              result = COALESCE($3::jsonb, result), error = COALESCE($4::jsonb, error),
              finished_at = CASE WHEN $5 THEN now() ELSE finished_at END,
              lease_token = CASE WHEN $5 THEN NULL ELSE lease_token END,
              lease_expires_at = CASE WHEN $5 THEN NULL ELSE lease_expires_at END
              ${set.extraSql ?? ''}
        WHERE id = $1 AND status = ANY($6::text[])
        RETURNING *),
     e AS (
       INSERT INTO job_events (job_id, seq, kind, data)
       SELECT id, event_seq, 'status', ${STATUS_EVENT_DATA_SQL}
         FROM u),
     webhooks AS (${outboxInsertSql('u')})
     SELECT ${JOB_COLUMNS}, event_seq${announce} FROM u`,
    values: [
      jobId,
      to,
      set.result === undefined ? null : JSON.stringify(set.result),
      set.error === undefined ? null : JSON.stringify(set.error),
      terminal,
      sourcesOf(to),
    ],
  });
  return rows[0];
}

/**
 * Cancels, oldest first, up to `limit` of a tenant's active jobs matching the filter, in the caller's
 * transaction: PENDING ones become CANCELLED at once (a `status` event and webhook each, as cancelJob),
 * RUNNING ones are asked to stop at their next chunk boundary (a running job already asked is not
 * counted again). `more`: further matching jobs remain for another call.
 */
export async function cancelMatching(
  db: Queryable,
  tenantId: string,
  f: JobFilter,
  limit: number,
): Promise<{ cancelled: number; requested: number; more: boolean }> {
  const { rows } = await db.query<{ id: string; status: JobStatus }>(
    `SELECT id, status FROM jobs
      WHERE tenant_id = $1 AND ${FILTER_SQL}
        AND (status = 'PENDING' OR (status = 'RUNNING' AND cancel_requested_at IS NULL))
      ORDER BY created_at, id
      LIMIT $10 FOR UPDATE`,
    [tenantId, ...filterValues(f), limit + 1],
  );
  const take = rows.slice(0, limit);
  const pending = take.filter((r) => r.status === 'PENDING').map((r) => r.id);
  const running = take.filter((r) => r.status === 'RUNNING').map((r) => r.id);
  const cancelled =
    pending.length === 0 ? [] : await transitionAll(db, pending, 'CANCELLED', ', cancel_requested_at = now()');
  const { rowCount } =
    running.length === 0
      ? { rowCount: 0 }
      : await db.query(
          `UPDATE jobs SET cancel_requested_at = now(), updated_at = now()
            WHERE id = ANY($1::uuid[]) AND status = 'RUNNING'
        RETURNING pg_notify('${CANCEL_CHANNEL}', id::text)`,
          [running],
        );
  return { cancelled: cancelled.length, requested: rowCount ?? 0, more: rows.length > limit };
}

/** transition() for many jobs in one statement (each announced on commit); the ids of those moved. */
async function transitionAll(db: Queryable, jobIds: string[], to: JobStatus, extraSql = ''): Promise<string[]> {
  const terminal = to === 'COMPLETED' || to === 'FAILED' || to === 'CANCELLED';
  const { rows } = await db.query<{ id: string }>(
    `WITH u AS (
       UPDATE jobs SET status = $2, updated_at = now(), event_seq = event_seq + 1,
              finished_at = CASE WHEN $3 THEN now() ELSE finished_at END,
              lease_token = CASE WHEN $3 THEN NULL ELSE lease_token END,
              lease_expires_at = CASE WHEN $3 THEN NULL ELSE lease_expires_at END
              ${extraSql}
        WHERE id = ANY($1::uuid[]) AND status = ANY($4::text[])
        RETURNING *),
     e AS (
       INSERT INTO job_events (job_id, seq, kind, data)
       SELECT id, event_seq, 'status', ${STATUS_EVENT_DATA_SQL}
         FROM u),
     webhooks AS (${outboxInsertSql('u')})
     SELECT id, pg_notify('${JOB_EVENTS_CHANNEL}', id::text || ':' || event_seq::text) FROM u`,
    [jobIds, to, terminal, sourcesOf(to)],
  );
  return rows.map((r) => r.id);
}

export type CancelOutcome =
  | { kind: 'cancelled'; job: JobRow }
  | { kind: 'requested'; job: JobRow }
  | { kind: 'finished'; job: JobRow }
  | { kind: 'not-found' };

/** Channel that tells workers a running job was asked to stop; payload is the job id. */
export const CANCEL_CHANNEL = 'longhaul_job_cancel';

/**
 * A PENDING job becomes CANCELLED at once; a RUNNING one is asked to stop (its worker stops at the
 * next chunk boundary at the latest); a finished one is left alone.
 */
export async function cancelJob(db: Queryable, tenantId: string, id: string): Promise<CancelOutcome> {
  const { rows } = await db.query<{ status: JobStatus }>(
    'SELECT status FROM jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE',
    [id, tenantId],
  );
  const row = rows[0];
  if (row === undefined) return { kind: 'not-found' };
  if (row.status === 'PENDING') {
    const job = await transition(db, id, 'CANCELLED', { extraSql: ', cancel_requested_at = now()' });
    if (job !== undefined) return { kind: 'cancelled', job };
  }
  if (row.status === 'RUNNING') {
    const { rows: updated } = await db.query<JobRow>(
      `UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
        WHERE id = $1 RETURNING ${JOB_COLUMNS}, pg_notify('${CANCEL_CHANNEL}', id::text)`,
      [id],
    );
    const job = updated[0];
    if (job !== undefined) return { kind: 'requested', job };
  }
  const job = await getJob(db, tenantId, id);
  return job === undefined ? { kind: 'not-found' } : { kind: 'finished', job };
}
