/**
 * Job events as streams carry them: the SQL that reads them, and the messages a subscriber receives.
 * Status changes are rows of `job_events` (each appended by the status change itself,
 * src/jobs/lifecycle.ts), but for a claim's `RUNNING` and a terminal status, which the jobs row
 * carries until the job next moves to PENDING (`running_seq`, `finished_seq`: sql/098, sql/099). A
 * job's progress is its jobs row too: each checkpoint sets `processed`, `total` and `progress_seq` (the
 * event seq it took) and appends no row, so a read gets every status change and the newest progress,
 * never a superseded one (docs/live-progress.md). Progress rows written before sql/041 are read as
 * they are.
 */
import type { Queryable } from '../db/pool.ts';
import { rowStatusEventsSql } from '../jobs/lifecycle.ts';
import { JOB_COLUMNS, toResource, type JobResource, type JobRow } from '../jobs/model.ts';
import type { JobStatus } from '../jobs/state.ts';
import type { Json } from '../../packages/sdk/src/index.ts';

export interface JobEvent {
  jobId: string;
  seq: number;
  kind: 'status' | 'progress';
  data: Json;
  createdAt: Date;
}

/** The first message of a new subscription: the job as it is, at event sequence `seq`. */
export interface SnapshotMessage {
  type: 'snapshot';
  seq: number;
  job: JobResource;
}

/**
 * The job's progress at a committed checkpoint: the newest one when several committed since the
 * stream's last read. `processed` and `percent` never decrease within one stream.
 */
export interface ProgressMessage {
  type: 'progress';
  seq: number;
  job_id: string;
  processed: number;
  total: number | null;
  percent: number | null;
  at: string;
}

/** One change of the job's status. */
export interface StatusMessage {
  type: 'status';
  seq: number;
  job_id: string;
  status: JobStatus;
  attempts: number;
  error: Json;
  result: Json;
  at: string;
}

export type StreamMessage = SnapshotMessage | ProgressMessage | StatusMessage;

interface EventRow {
  job_id: string;
  seq: number;
  kind: 'status' | 'progress';
  data: Json;
  created_at: Date;
}

const EVENT_COLUMNS = 'job_id, seq, kind, data, created_at';

/** The newest progress of job `job` as an event row, if its seq is above `after` (SQL expressions). */
function progressAfterSql(job: string, after: string): string {
  return `SELECT id AS job_id, progress_seq AS seq, 'progress'::text AS kind,
                 jsonb_build_object('processed', processed, 'total', total, 'percent', longhaul_progress_percent(processed, total)) AS data,
                 COALESCE(checkpoint_at, updated_at) AS created_at
            FROM jobs WHERE id = ${job} AND progress_seq > ${after}`;
}

/** Job `job`'s status events after `after`: the stored ones and those its row carries (unordered). */
function statusAfterSql(job: string, after: string, kind: string): string {
  return `SELECT ${EVENT_COLUMNS} FROM job_events WHERE job_id = ${job} AND seq > ${after}${kind}
          UNION ALL SELECT e.* FROM jobs r CROSS JOIN LATERAL ${rowStatusEventsSql('r')} e
                     WHERE r.id = ${job} AND e.seq > ${after}`;
}

/** Every event of job `job` after `after` a stream is sent: the status events and the newest progress (unordered). */
function eventsAfterSql(job: string, after: string): string {
  return `${statusAfterSql(job, after, '')} UNION ALL ${progressAfterSql(job, after)}`;
}

function toEvent(r: EventRow): JobEvent {
  return { jobId: r.job_id, seq: r.seq, kind: r.kind, data: r.data, createdAt: r.created_at };
}

/** The job of a tenant with its current event sequence, or undefined (also for another tenant's job). */
export async function readSnapshot(
  db: Queryable,
  tenantId: string,
  jobId: string,
): Promise<{ job: JobRow; seq: number } | undefined> {
  const { rows } = await db.query<JobRow & { event_seq: number }>(
    `SELECT ${JOB_COLUMNS}, event_seq FROM jobs WHERE id = $1 AND tenant_id = $2`,
    [jobId, tenantId],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  const { event_seq: seq, ...job } = row;
  return { job, seq };
}

export function snapshotMessage(job: JobRow, seq: number): SnapshotMessage {
  return { type: 'snapshot', seq, job: toResource(job) };
}

/** Up to `limit` events of one job after `afterSeq`, in order. */
export async function readEvents(db: Queryable, jobId: string, afterSeq: number, limit: number): Promise<JobEvent[]> {
  const { rows } = await db.query<EventRow>(`SELECT * FROM (${eventsAfterSql('$1', '$2')}) e ORDER BY seq LIMIT $3`, [
    jobId,
    afterSeq,
    limit,
  ]);
  return rows.map(toEvent);
}

/** A job's newest `limit` events, oldest first (the console's timeline). */
export async function recentEvents(db: Queryable, jobId: string, limit: number): Promise<JobEvent[]> {
  const { rows } = await db.query<EventRow>(
    `SELECT * FROM (SELECT * FROM (${eventsAfterSql('$1', '0')}) a ORDER BY seq DESC LIMIT $2) e ORDER BY seq`,
    [jobId, limit],
  );
  return rows.map(toEvent);
}

/** For many jobs at once (one query per notification burst): up to `limit` events of each after its position. */
export async function readEventsOfJobs(
  db: Queryable,
  positions: ReadonlyArray<{ jobId: string; after: number }>,
  limit: number,
): Promise<JobEvent[]> {
  const { rows } = await db.query<EventRow>(
    `SELECT e.job_id, e.seq, e.kind, e.data, e.created_at
       FROM unnest($1::uuid[], $2::bigint[]) AS p(job_id, after)
       CROSS JOIN LATERAL (
         SELECT * FROM (${eventsAfterSql('p.job_id', 'p.after')}) a ORDER BY seq LIMIT $3) e
      ORDER BY e.job_id, e.seq`,
    [positions.map((p) => p.jobId), positions.map((p) => p.after), limit],
  );
  return rows.map(toEvent);
}

/**
 * A lagging subscriber's catch-up with progress coalesced: every status event after `afterSeq` (up to
 * `limit`) and only the newest progress event (or, when the status events were cut off, only if it
 * comes before the last of them).
 */
export async function readCoalesced(
  db: Queryable,
  jobId: string,
  afterSeq: number,
  limit: number,
): Promise<JobEvent[]> {
  const { rows } = await db.query<EventRow>(
    `(SELECT * FROM (${statusAfterSql('$1', '$2', " AND kind = 'status'")}) s ORDER BY seq LIMIT $3)
     UNION ALL
     (SELECT * FROM (SELECT ${EVENT_COLUMNS} FROM job_events WHERE job_id = $1 AND seq > $2 AND kind = 'progress'
                     UNION ALL ${progressAfterSql('$1', '$2')}) p
       ORDER BY seq DESC LIMIT 1)
     ORDER BY seq`,
    [jobId, afterSeq, limit],
  );
  const events = rows.map(toEvent);
  // Status events cut off at `limit`: a progress event after the last of them would carry the client
  // past the status events not read yet. It waits for the next read, which starts at that status.
  const statuses = events.filter((e) => e.kind === 'status');
  const last = statuses.at(-1);
  return statuses.length === limit && last !== undefined ? events.filter((e) => e.seq <= last.seq) : events;
}

/** The progress a client had seen up to `seq` (the highest committed before it), so a resumed stream never goes back. */
export async function progressUpTo(
  db: Queryable,
  jobId: string,
  seq: number,
): Promise<{ processed: number; percent: number | null }> {
  const { rows } = await db.query<{ processed: number | null; percent: number | null }>(
    `SELECT max(processed) AS processed, max(percent) AS percent FROM (
       SELECT (data->>'processed')::bigint AS processed, (data->>'percent')::float8 AS percent
         FROM job_events WHERE job_id = $1 AND seq <= $2 AND kind = 'progress'
       UNION ALL
       SELECT processed, longhaul_progress_percent(processed, total) FROM jobs WHERE id = $1 AND progress_seq <= $2) p`,
    [jobId, seq],
  );
  return { processed: rows[0]?.processed ?? 0, percent: rows[0]?.percent ?? null };
}

function field(data: Json, name: string): Json | undefined {
  return typeof data === 'object' && data !== null && !Array.isArray(data) ? data[name] : undefined;
}

const num = (v: Json | undefined): number | null =>
  typeof v === 'number' ? v : typeof v === 'string' && v !== '' && Number.isFinite(Number(v)) ? Number(v) : null;

/** The message for an event, with progress held at or above `floor` (what the client has already seen). */
export function eventMessage(
  e: JobEvent,
  floor: { processed: number; percent: number | null },
): ProgressMessage | StatusMessage {
  const at = e.createdAt.toISOString();
  if (e.kind === 'progress') {
    const percent = num(field(e.data, 'percent'));
    return {
      type: 'progress',
      seq: e.seq,
      job_id: e.jobId,
      processed: Math.max(num(field(e.data, 'processed')) ?? 0, floor.processed),
      total: num(field(e.data, 'total')),
      percent: percent === null ? floor.percent : Math.max(percent, floor.percent ?? 0),
      at,
    };
  }
  return {
    type: 'status',
    seq: e.seq,
    job_id: e.jobId,
    status: field(e.data, 'status') as JobStatus,
    attempts: num(field(e.data, 'attempts')) ?? 0,
    error: field(e.data, 'error') ?? null,
    result: field(e.data, 'result') ?? null,
    at,
  };
}
