/**
 * The jobs table's lifecycle, the one module that writes it: every statement that creates a job,
 * changes its status, lease or checkpoint, or deletes it, named as an action on the row that says its guard (River's `JobSetStateIfRunning` style). Every status
 * change is built by statusChangeSql, so each one writes the row, its `status` event and, for a
 * terminal status, its webhook delivery alike. Claiming under a fresh lease token, renewing it, the
 * fenced checkpoint and completion: every write by a running execution names its lease token, so a
 * worker that lost its lease (paused, partitioned, presumed dead) changes nothing.
 */
import type { Queryable, Statement } from '../db/pool.ts';
import {
  CANCEL_CHANNEL,
  JOB_EVENTS_CHANNEL,
  RUNNING_SQL,
  getJob,
  lockActiveMatching,
  type JobFilter,
} from './repository.ts';
import { outboxInsertSql } from '../webhooks/store.ts';
import { JOB_COLUMNS, type AttemptError, type JobRow } from './model.ts';
import { isTerminal, sourcesOf, TERMINAL_STATUSES, type JobStatus } from './state.ts';
import type { Json } from '../../packages/sdk/src/index.ts';

/**
 * Names of the per-step statements, run as prepared statements (parsed and planned once per
 * connection): planning the checkpoint's CTE costs more than executing it, and far more on a busy CPU.
 */
const STATEMENTS = {
  lock: 'longhaul_worker_lock',
  lease: 'longhaul_worker_lease',
  checkpoint: 'longhaul_worker_checkpoints',
  checkpointOne: 'longhaul_worker_checkpoint',
  complete: 'longhaul_worker_complete',
  completeAll: 'longhaul_worker_complete_all',
  start: 'longhaul_job_start',
  returnToPending: 'longhaul_job_return_to_pending',
  fail: 'longhaul_job_fail',
  cancelRunning: 'longhaul_job_cancel_running',
} as const;

/** The data of a `status` event, from the jobs row `r` after its update. */
const statusEventDataSql = (r: string) =>
  `jsonb_build_object('status', ${r}.status, 'attempts', ${r}.attempts, 'error', ${r}.error, 'result', ${r}.result)`;

/** Whether a claim of the row `j` leaves its `RUNNING` event in the row: the event's error and result are then null. */
const RUNNING_IN_ROW_SQL = 'j.error IS NULL AND j.result IS NULL';

/**
 * The status events the jobs row `r` carries, as job_events rows (what their stored rows would hold),
 * for a CROSS JOIN LATERAL; `seq` is null for one it does not carry. A claim's `RUNNING` (sql/098) and a
 * terminal status's (sql/099): a finished job's row keeps its status, attempts, error and result. Both
 * stay there until the job next moves to PENDING, which stores them.
 */
export function rowStatusEventsSql(r: string): string {
  return `(SELECT ${r}.id AS job_id, ${r}.running_seq AS seq, 'status'::text AS kind,
                  jsonb_build_object('status', 'RUNNING', 'attempts', ${r}.attempts, 'error', NULL, 'result', NULL) AS data,
                  ${r}.running_at AS created_at
           UNION ALL
           SELECT ${r}.id, ${r}.finished_seq, 'status', ${statusEventDataSql(r)}, ${r}.finished_at)`;
}

/** Announces a moved row's newest event on JOB_EVENTS_CHANNEL (sent on commit), in a SELECT over `u`. */
export const ANNOUNCE_SQL = `pg_notify('${JOB_EVENTS_CHANNEL}', id::text || ':' || event_seq::text)`;

/** One status change, for statusChangeSql. */
export interface StatusChange {
  /** Common table expressions the update reads (a batch's rows), without WITH. */
  with?: string;
  to: JobStatus;
  /** The statuses the action moves from: each one the state machine allows `to` from. (Default: all of those) */
  from?: readonly JobStatus[];
  /** Further assignments to the row `j`, each led by a comma. */
  set?: string;
  /** A FROM list for the update (a batch's rows). */
  using?: string;
  /** Which rows, besides the status guard. */
  where: string;
  /** A checkpoint in the same statement, whose progress event (the row, at progress_seq) comes before or after the status event. */
  progress?: 'before' | 'after';
  /** Columns returned beside the row's (`j.*`). */
  returning?: string;
  /** Common table expressions after the update, reading `u` (the rows moved), without WITH. */
  after?: string;
  /** The statement's answer: a SELECT over `u`, the rows moved. */
  select: string;
}

/**
 * The one statement shape that changes a job's status: the update of `jobs` (alias `j`), guarded by
 * the state machine (src/jobs/state.ts); its `status` event in job_events; and for a terminal status
 * the lease ended and the webhook delivery written (the outbox: outboxInsertSql of
 * src/webhooks/store.ts), so all of them commit or roll back together. Two events stay in the row
 * instead of a row of their own: a claim's (to RUNNING) of a row with no error (`running_seq`,
 * sql/098), and a terminal status's (`finished_seq`, sql/099). The next move to PENDING, which a claim
 * and a replay (the only changes of `attempts`, and the only way out of a terminal status) always
 * follow, stores them.
 */
export function statusChangeSql(c: StatusChange): string {
  const legal = sourcesOf(c.to);
  const from = c.from ?? legal;
  if (from.length === 0 || from.some((s) => !legal.includes(s)))
    throw new Error(`the state machine has no move from ${from.join(', ') || 'nothing'} to ${c.to}`);
  const terminal = isTerminal(c.to);
  const progressSeq = { before: ', progress_seq = j.event_seq + 1', after: ', progress_seq = j.event_seq + 2' };
  // The status event's seq, from the row before its update.
  const statusSeq = `j.event_seq + ${c.progress === 'before' ? 2 : 1}`;
  const moved: Partial<Record<JobStatus, string>> = {
    RUNNING: `, running_seq = CASE WHEN ${RUNNING_IN_ROW_SQL} THEN ${statusSeq} END,
              running_at = CASE WHEN ${RUNNING_IN_ROW_SQL} THEN now() END`,
    PENDING: ', running_seq = NULL, running_at = NULL, finished_seq = NULL',
  };
  return `WITH ${c.with === undefined ? '' : `${c.with},`} u AS (
       UPDATE jobs j SET status = '${c.to}', event_seq = j.event_seq + ${c.progress === undefined ? 1 : 2}, updated_at = now()
              ${c.progress === undefined ? '' : progressSeq[c.progress]}
              ${terminal ? `, finished_at = now(), finished_seq = ${statusSeq}, lease_token = NULL, lease_expires_at = NULL` : ''}
              ${moved[c.to] ?? ''}
              ${c.set ?? ''}
              ${c.using === undefined ? '' : `FROM ${c.using}`}
        WHERE ${c.where} AND j.status IN (${from.map((s) => `'${s}'`).join(', ')})
        RETURNING j.*${c.returning === undefined ? '' : `, ${c.returning}`})
     ${
       // A terminal status's event is the row's (finished_seq).
       terminal
         ? ''
         : `, e AS (
       INSERT INTO job_events (job_id, seq, kind, data)
       SELECT id, ${c.progress === 'after' ? 'event_seq - 1' : 'event_seq'}, 'status', ${statusEventDataSql('u')} FROM u
        ${c.to === 'RUNNING' ? 'WHERE running_seq IS NULL' : ''})`
     }
     ${
       // The events the row carried, as it was before this statement (every part of it reads the same
       // snapshot): only a claim sets running_seq and a terminal status finished_seq, and a job moving
       // to PENDING (RUNNING or FAILED) is neither claimed nor finished meanwhile.
       c.to === 'PENDING'
         ? `, stored AS (
       INSERT INTO job_events (job_id, seq, kind, data, created_at)
       SELECT e.* FROM jobs p CROSS JOIN LATERAL ${rowStatusEventsSql('p')} e
        WHERE p.id IN (SELECT id FROM u) AND e.seq IS NOT NULL)`
         : ''
     }
     ${terminal ? `, webhooks AS (${outboxInsertSql('u')})` : ''}
     ${c.after === undefined ? '' : `, ${c.after}`}
     ${c.select}`;
}

/** A moved job as the single-job actions return it: the row and its `status` event's seq. */
export type MovedJob = JobRow & { event_seq: number };

/**
 * Runs a status change of the job $1, answering its row. `announce: false` leaves the announcement
 * to the caller, who sends it after the commit (src/jobs/events-publisher.ts): a notifying transaction
 * holds Postgres's global notify lock through its commit's WAL flush, which serialises busy writers.
 * A quiet form runs as the prepared statement `name`: the worker runs it many times a second, and
 * planning it costs more than running it.
 */
async function moveJob(
  db: Queryable,
  c: Omit<StatusChange, 'where' | 'select'> & { announce: boolean; name?: string },
  values: unknown[],
): Promise<MovedJob | undefined> {
  const { rows } = await db.query<MovedJob>({
    name: c.announce ? undefined : c.name,
    text: statusChangeSql({
      ...c,
      where: 'j.id = $1',
      select: `SELECT ${JOB_COLUMNS}, event_seq${c.announce ? `, ${ANNOUNCE_SQL}` : ''} FROM u`,
    }),
    values,
  });
  return rows[0];
}

/** PENDING → RUNNING as a claim takes the job (its lease taken in the same transaction); unannounced. Returns the event's seq. */
export async function startIfPending(db: Queryable, jobId: string): Promise<number | undefined> {
  return (await moveJob(db, { to: 'RUNNING', from: ['PENDING'], announce: false, name: STATEMENTS.start }, [jobId]))
    ?.event_seq;
}

/**
 * RUNNING → PENDING: the job waits for a worker again (an execution handed over at shutdown, or a
 * failed attempt with retries left, whose `error` is recorded).
 */
export async function returnToPendingIfRunning(
  db: Queryable,
  jobId: string,
  f: { error?: AttemptError; announce: boolean },
): Promise<MovedJob | undefined> {
  return moveJob(
    db,
    {
      to: 'PENDING',
      from: ['RUNNING'],
      set: ', error = COALESCE($2::jsonb, j.error)',
      announce: f.announce,
      name: STATEMENTS.returnToPending,
    },
    [jobId, f.error === undefined ? null : JSON.stringify(f.error)],
  );
}

/** PENDING or RUNNING → FAILED for good, recording `error` (the last attempt's, or a time limit's). */
export async function failIfActive(
  db: Queryable,
  jobId: string,
  f: { error: AttemptError; announce: boolean },
): Promise<MovedJob | undefined> {
  return moveJob(
    db,
    {
      to: 'FAILED',
      from: ['PENDING', 'RUNNING'],
      set: ', error = $2::jsonb',
      announce: f.announce,
      name: STATEMENTS.fail,
    },
    [jobId, JSON.stringify(f.error)],
  );
}

/** RUNNING → CANCELLED: a running job asked to stop has stopped (its lease released by the caller). */
export async function cancelIfRunning(
  db: Queryable,
  jobId: string,
  f: { announce: boolean },
): Promise<MovedJob | undefined> {
  return moveJob(db, { to: 'CANCELLED', from: ['RUNNING'], announce: f.announce, name: STATEMENTS.cancelRunning }, [
    jobId,
  ]);
}

/** PENDING → CANCELLED at once for each of the jobs that is still PENDING, each announced on commit; the jobs moved. */
async function cancelIfPending(db: Queryable, jobIds: string[]): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    statusChangeSql({
      to: 'CANCELLED',
      from: ['PENDING'],
      set: ', cancel_requested_at = now()',
      where: 'j.id = ANY($1::uuid[])',
      select: `SELECT ${JOB_COLUMNS}, ${ANNOUNCE_SQL} FROM u`,
    }),
    [jobIds],
  );
  return rows;
}

/**
 * Asks each of the jobs that is RUNNING to stop, telling the workers on CANCEL_CHANNEL; a job asked
 * before keeps the time of its first request. The jobs asked.
 */
async function requestCancelIfRunning(db: Queryable, jobIds: string[]): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
      WHERE id = ANY($1::uuid[]) AND status = 'RUNNING'
      RETURNING ${JOB_COLUMNS}, pg_notify('${CANCEL_CHANNEL}', id::text)`,
    [jobIds],
  );
  return rows;
}

export type CancelOutcome =
  | { kind: 'cancelled'; job: JobRow }
  | { kind: 'requested'; job: JobRow }
  | { kind: 'finished'; job: JobRow }
  | { kind: 'not-found' };

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
    const [job] = await cancelIfPending(db, [id]);
    if (job !== undefined) return { kind: 'cancelled', job };
  }
  if (row.status === 'RUNNING') {
    const [job] = await requestCancelIfRunning(db, [id]);
    if (job !== undefined) return { kind: 'requested', job };
  }
  const job = await getJob(db, tenantId, id);
  return job === undefined ? { kind: 'not-found' } : { kind: 'finished', job };
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
  const rows = await lockActiveMatching(db, tenantId, f, limit + 1);
  const take = rows.slice(0, limit);
  const pending = take.filter((r) => r.status === 'PENDING').map((r) => r.id);
  const running = take.filter((r) => r.status === 'RUNNING').map((r) => r.id);
  const cancelled = pending.length === 0 ? [] : await cancelIfPending(db, pending);
  const requested = running.length === 0 ? [] : await requestCancelIfRunning(db, running);
  return { cancelled: cancelled.length, requested: requested.length, more: rows.length > limit };
}

/**
 * FAILED → PENDING, an operator's replay: fresh attempts and lease-loss budget, `execution` the one
 * allowed to run it, its time limits started afresh (its timeout counts from its next start, and it
 * does not expire); from its last checkpoint or, `from: 'start'`, from scratch.
 */
export async function replayIfFailed(
  db: Queryable,
  jobId: string,
  f: { execution: string; from: 'checkpoint' | 'start' },
): Promise<MovedJob | undefined> {
  const restart =
    ', checkpoint_cursor = NULL, checkpoint_state = NULL, checkpoint_at = NULL, processed = 0, total = NULL, progress_seq = NULL';
  return moveJob(
    db,
    {
      to: 'PENDING',
      from: ['FAILED'],
      set: `, attempts = 0, lease_losses = 0, execution_id = $2, dead_lettered_at = NULL,
            finished_at = NULL, started_at = NULL, expires_at = NULL, cancel_requested_at = NULL,
            lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL ${f.from === 'start' ? restart : ''}`,
      announce: true,
    },
    [jobId, f.execution],
  );
}

/** The job as a claimer sees it, locked FOR UPDATE. */
export interface ClaimRow extends Pick<
  JobRow,
  | 'id'
  | 'tenant_id'
  | 'type'
  | 'status'
  | 'input'
  | 'metadata'
  | 'attempts'
  | 'max_attempts'
  | 'processed'
  | 'total'
  | 'error_history'
> {
  checkpoint_cursor: Json;
  checkpoint_state: Json;
  checkpoint_at: Date | null;
  /** The execution allowed to run the job (the job id for the first one). */
  execution: string;
  lease_owner: string | null;
  /** A live lease: another execution is (or may still be) running the job. */
  lease_live: boolean;
  /** A lease that ran out and was not taken over yet: the worker that held it was lost. */
  lease_lapsed: boolean;
  /** Takeovers after a lost lease so far (they do not spend attempts; LONGHAUL_MAX_LEASE_LOSSES bounds them). */
  lease_losses: number;
  cancel_requested: boolean;
  priority: number;
  /** When the job's timeout_seconds, counted from its first start, runs out; null: no limit. */
  deadline: Date | null;
  /** The deadline has passed: the job fails with a `timeout` error instead of running on. */
  timed_out: boolean;
  /** Never started and past its expires_at: the job fails with an `expired` error instead of running. */
  expired: boolean;
  /** The trace context stored when the job was created (null: not traced), which its executions continue. */
  trace_context: Json | null;
  created_at: Date;
}

/** A job's priority and where it stands against its time limits (docs/scheduling.md). */
const TIME_LIMIT_COLUMNS = `priority,
            COALESCE(started_at, now()) + make_interval(secs => timeout_seconds) AS deadline,
            COALESCE(COALESCE(started_at, now()) + make_interval(secs => timeout_seconds) <= now(), false) AS timed_out,
            COALESCE(status = 'PENDING' AND started_at IS NULL AND expires_at <= now(), false) AS expired`;

const CLAIM_COLUMNS = `id, tenant_id, type, status, input, metadata, attempts, max_attempts, processed, total,
            checkpoint_cursor, checkpoint_state, checkpoint_at, COALESCE(execution_id, id) AS execution,
            lease_owner, COALESCE(lease_token IS NOT NULL AND lease_expires_at > now(), false) AS lease_live,
            COALESCE(lease_token IS NOT NULL AND lease_expires_at <= now(), false) AS lease_lapsed, lease_losses,
            cancel_requested_at IS NOT NULL AS cancel_requested, error_history, trace_context, created_at,
            ${TIME_LIMIT_COLUMNS}`;

export async function lockJob(db: Queryable, jobId: string): Promise<ClaimRow | undefined> {
  const { rows } = await db.query<ClaimRow>({
    name: STATEMENTS.lock,
    text: `SELECT ${CLAIM_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE`,
    values: [jobId],
  });
  return rows[0];
}

/**
 * What a fetch (a statement of the worker's over pg-boss's table, claimFetchedSql) returns for each
 * execution, under these names among its others: the execution's id, its data and its retry count.
 */
export interface FetchRow {
  id: string;
  data: { jobId: string; cont?: boolean };
  retryCount: number;
}

/** A job claimed by the statement that fetched its execution: as the locked claim answers, with its lease token and `status` event. */
export type FetchedClaim = ClaimRow & { token: string; seq: number };

/** Whether the job `j` may be claimed by the execution `execution` without a lock (the first execution's usual case). */
const CLAIMABLE_SQL = (execution: string) => `j.checkpoint_at IS NULL AND COALESCE(j.execution_id, j.id) = ${execution}
          AND NOT COALESCE(j.lease_token IS NOT NULL AND j.lease_expires_at > now(), false)
          AND j.cancel_requested_at IS NULL
          AND NOT COALESCE(j.started_at IS NULL AND j.expires_at <= now(), false)
          AND NOT COALESCE(COALESCE(j.started_at, now()) + make_interval(secs => j.timeout_seconds) <= now(), false)`;

/**
 * The fetch `fetch` (a statement whose parameters run from $1 to $`p - 1`, answering FetchRow
 * columns, its rows locked and not yet changed) and, in the same statement, the claim of each fetched
 * execution's job where nothing needs the row lock: the job is PENDING, never checkpointed, its
 * execution is this one, no live lease, no cancel request, within its time limits, and of a type in
 * $`p + 2` (text[]) with room here for it ($`p + 3`, int[], by type). A claim is what the locked claim
 * writes (Claimer.claim): a fresh lease token, owner $`p` and $`p + 1` seconds, attempts, the
 * execution, started_at, and PENDING → RUNNING with its `status` event (statusChangeSql); start() runs
 * after it, and its checkpoint commits with the first chunk's (src/worker/step-runner.ts). `after`,
 * common table expressions over `fetched` (the fetch's rows) and `u` (the jobs claimed, each naming
 * its execution in `execution_id`), settles the fetched executions in the same statement. Each
 * execution is answered with the fetch's columns and `claim`: its job as claimed (FetchedClaim, as
 * JSON), or null for the locked claim to look at.
 */
export function claimFetchedSql(fetch: string, p: number, after: string): string {
  return statusChangeSql({
    with: `fetched AS (${fetch}),
     -- An execution that names no job (not a uuid) is the locked claim's to settle, not every fetch's failure.
     named AS (SELECT f.id AS execution, CASE WHEN pg_input_is_valid(f.data ->> 'jobId', 'uuid') THEN (f.data ->> 'jobId')::uuid END AS job_id
                 FROM fetched f),
     -- The fetched executions' jobs through the primary key alone, then updated by the address of the
     -- row version read (one changed since is skipped: the locked claim's). With a condition on status the
     -- planner may walk every PENDING job through jobs_active instead, as it does when its statistics
     -- predate a backlog; the fetch's one plan (src/worker/fetcher.ts FETCH_SESSION) must not.
     seen AS MATERIALIZED (SELECT j.ctid AS row_at, j.* FROM jobs j WHERE j.id = ANY (ARRAY(SELECT job_id FROM named))),
     pick AS (
       SELECT j.row_at, j.id, j.type, f.id AS execution,
              -- A continuation carries on the same attempt; a first execution or a retry is a new attempt.
              CASE WHEN f.data ->> 'cont' = 'true' AND f."retryCount" = 0 THEN greatest(1, j.attempts) ELSE j.attempts + 1 END AS attempts,
              row_number() OVER (PARTITION BY j.type ORDER BY j.priority DESC, j.created_at) AS n
         FROM fetched f JOIN named x ON x.execution = f.id JOIN seen j ON j.id = x.job_id
        WHERE j.status = 'PENDING' AND ${CLAIMABLE_SQL('f.id')}),
     room AS (SELECT * FROM unnest($${p + 2}::text[], $${p + 3}::int[]) AS r(type, room))`,
    to: 'RUNNING',
    from: ['PENDING'],
    set: `, lease_token = gen_random_uuid(), lease_owner = $${p}, lease_expires_at = now() + make_interval(secs => $${p + 1}),
              attempts = k.attempts, execution_id = k.execution,
              started_at = COALESCE(j.started_at, statement_timestamp())`,
    using: 'pick k, room r',
    where: `j.ctid = k.row_at AND j.id = k.id AND r.type = j.type AND k.n <= r.room AND ${CLAIMABLE_SQL('k.execution')}`,
    after,
    select: `SELECT f.*, (SELECT to_jsonb(c) FROM (
               SELECT ${CLAIM_COLUMNS}, lease_token AS token, event_seq AS seq FROM u
                WHERE u.execution_id = f.id) c) AS claim
               FROM fetched f`,
  });
}

/**
 * Runs a fetch with claimFetchedSql (`fetch.values` its first parameters, `fetch.after` its settling of
 * the executions), claiming for `lease.owner`
 * the jobs of types with room in `lease.rooms`. Unannounced: the caller announces each claim's event.
 */
export async function fetchAndClaim<E extends FetchRow>(
  db: Queryable,
  fetch: { name: string; text: string; values: unknown[]; after: string },
  lease: { owner: string; seconds: number; rooms: ReadonlyMap<string, number> },
): Promise<Array<E & { claim: FetchedClaim | null }>> {
  const { rows } = await db.query<E & { claim: FetchedClaim | null }>({
    name: fetch.name,
    text: claimFetchedSql(fetch.text, fetch.values.length + 1, fetch.after),
    values: [...fetch.values, lease.owner, lease.seconds, [...lease.rooms.keys()], [...lease.rooms.values()]],
  });
  for (const r of rows) {
    const c = r.claim;
    if (c === null) continue;
    // Timestamps come as text in JSON.
    c.created_at = new Date(c.created_at);
    if (c.deadline !== null) c.deadline = new Date(c.deadline);
  }
  return rows;
}

/** Takes the lease (the row must be locked by the caller's transaction). */
export async function takeLease(
  db: Queryable,
  f: {
    jobId: string;
    token: string;
    owner: string;
    leaseSeconds: number;
    attempts: number;
    execution: string;
  },
): Promise<void> {
  await db.query({
    name: STATEMENTS.lease,
    text: `UPDATE jobs SET lease_token = $2, lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4),
            attempts = $5, execution_id = $6, started_at = COALESCE(started_at, now()), updated_at = now()
      WHERE id = $1`,
    values: [f.jobId, f.token, f.owner, f.leaseSeconds, f.attempts, f.execution],
  });
}

/** Extends the lease. Returns undefined if the lease is no longer ours, else whether a cancel was requested. */
export async function renewLease(
  db: Queryable,
  jobId: string,
  token: string,
  leaseSeconds: number,
): Promise<{ cancelRequested: boolean } | undefined> {
  const { rows } = await db.query<{ cancel: boolean }>(
    `UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
      WHERE id = $1 AND lease_token = $2 AND status = 'RUNNING'
      RETURNING cancel_requested_at IS NOT NULL AS cancel`,
    [jobId, token, leaseSeconds],
  );
  const row = rows[0];
  return row === undefined ? undefined : { cancelRequested: row.cancel };
}

export interface CheckpointWrite {
  jobId: string;
  token: string;
  cursor: Json;
  state: Json;
  /** Items this step processed, added to the job's progress. */
  processed: number;
  /** Sets the job's total when not undefined (start), keeps it otherwise. */
  total?: number | null;
  leaseSeconds: number;
}

/**
 * Checkpoints, many jobs in one statement: per job the new cursor and state, progress, lease
 * extension and the job's next event seq as its `progress_seq`, fenced by its lease token and by
 * cancellation (no chunk commits once a cancel is requested). The progress event is the jobs row itself
 * (streams read it from there, src/realtime/events.ts): the update changes no indexed column, so it is
 * a HOT update and the checkpoint writes no other row (sql/040, sql/041). Returns each applied write's
 * event seq by writeKey; a write missing from the map was refused. It does not notify: the caller
 * announces the event once its transaction has committed (src/jobs/events-publisher.ts).
 */
export async function writeCheckpoints(db: Queryable, writes: CheckpointWrite[]): Promise<Map<string, number>> {
  const { rows } = await db.query<{ id: string; token: string; seq: number }>({
    name: STATEMENTS.checkpoint,
    text: `WITH c AS (
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[], $4::jsonb[], $5::bigint[], $6::bigint[], $7::bool[], $8::float8[])
         AS c(id, token, cursor, state, processed, total, set_total, lease_seconds)),
     u AS (
       UPDATE jobs j SET checkpoint_cursor = c.cursor, checkpoint_state = c.state, checkpoint_at = now(),
              processed = j.processed + c.processed, total = CASE WHEN c.set_total THEN c.total ELSE j.total END,
              event_seq = j.event_seq + 1, progress_seq = j.event_seq + 1, updated_at = now(),
              lease_expires_at = now() + make_interval(secs => c.lease_seconds)
         FROM c
        WHERE j.id = ANY($1::uuid[]) AND j.id = c.id AND j.lease_token = c.token AND j.status = 'RUNNING' AND j.cancel_requested_at IS NULL
        RETURNING j.id, c.token, j.event_seq)
     SELECT id, token, event_seq AS seq FROM u`,
    values: [
      writes.map((w) => w.jobId),
      writes.map((w) => w.token),
      writes.map((w) => JSON.stringify(w.cursor)),
      writes.map((w) => JSON.stringify(w.state)),
      writes.map((w) => w.processed),
      writes.map((w) => w.total ?? null),
      writes.map((w) => w.total !== undefined),
      writes.map((w) => w.leaseSeconds),
    ],
  });
  return new Map(rows.map((r) => [writeKey(r.id, r.token), r.seq]));
}

/**
 * Jobs at most in one group-committed statement: bounds its size. (The set statements also filter
 * `id = ANY($1)` so that even a generic plan finds the rows through the primary key.)
 */
export const GROUP_MAX = 64;

/**
 * One job's checkpoint, as writeCheckpoints writes it, for a step that commits its own transaction.
 * A statement of its own because Postgres keeps re-planning the unnest form for one row (its generic
 * plan is costed for ten), and planning costs more than running it. Returns the event seq, or
 * undefined when refused.
 */
export async function writeCheckpoint(db: Queryable, w: CheckpointWrite): Promise<number | undefined> {
  const { rows } = await db.query<{ seq: number }>({
    name: STATEMENTS.checkpointOne,
    text: `UPDATE jobs SET checkpoint_cursor = $3, checkpoint_state = $4, checkpoint_at = now(),
              processed = processed + $5, total = CASE WHEN $7 THEN $6 ELSE total END,
              event_seq = event_seq + 1, progress_seq = event_seq + 1, updated_at = now(),
              lease_expires_at = now() + make_interval(secs => $8)
        WHERE id = $1 AND lease_token = $2 AND status = 'RUNNING' AND cancel_requested_at IS NULL
        RETURNING event_seq AS seq`,
    values: [
      w.jobId,
      w.token,
      JSON.stringify(w.cursor),
      JSON.stringify(w.state),
      w.processed,
      w.total ?? null,
      w.total !== undefined,
      w.leaseSeconds,
    ],
  });
  return rows[0]?.seq;
}

/**
 * How a group-committed statement answers each write: by job and lease token, not job alone, because
 * two executions of one job (one that lost its lease, and the new owner) may share a batch, and only
 * the one whose token the row carries may be told that its write applied.
 */
export function writeKey(jobId: string, token: string): string {
  return `${jobId} ${token}`;
}

/** The two events a combined statement wrote for a job: [first, second] seq. */
export type EventPair = [number, number];

export interface CompleteWithCheckpoint {
  jobId: string;
  token: string;
  cursor: Json;
  state: Json;
  processed: number;
  /** Sets the job's total when not undefined (start()'s, not committed before), keeps it otherwise. */
  total?: number | null;
  result: Json;
}

/**
 * Last checkpoints and RUNNING → COMPLETED, many jobs in one statement: per job the final cursor,
 * state and progress (its progress event is the jobs row, at `progress_seq`), the result and the
 * `status` event, the lease ended,
 * and the webhook outbox row of every terminal status (statusChangeSql).
 * Each job is fenced like a checkpoint. Returns each applied completion's two event seqs by writeKey;
 * one missing from the map was refused.
 */
export async function completeWithCheckpoint(
  db: Queryable,
  jobs: CompleteWithCheckpoint[],
): Promise<Map<string, EventPair>> {
  const { rows } = await db.query<{ id: string; token: string; seq: number }>(completeQuery(jobs, false));
  return new Map(rows.map((r) => [writeKey(r.id, r.token), [r.seq - 1, r.seq]]));
}

/**
 * completeWithCheckpoint as one statement that either completes every job or fails (SQLSTATE
 * COMPLETE_REFUSED), changing nothing. Read its rows with completedSeqs.
 */
export function completeAllQuery(jobs: CompleteWithCheckpoint[]): Statement {
  return completeQuery(jobs, true);
}

/** The SQLSTATE of completeAllQuery when a job was refused (sql/012). */
export const COMPLETE_REFUSED = 'LH002';

/** Each applied completion's two event seqs by writeKey, from the rows of completeAllQuery. */
export function completedSeqs(rows: unknown[]): Map<string, EventPair> {
  // bigint[] arrives as strings (only scalar int8 has a number parser, src/db/pool.ts).
  const row = rows[0] as { ids: string[] | null; tokens: string[] | null; seqs: string[] | null } | undefined;
  const ids = row?.ids ?? [];
  const tokens = row?.tokens ?? [];
  const seqs = (row?.seqs ?? []).map(Number);
  return new Map(ids.map((id, i) => [writeKey(id, tokens[i] ?? ''), [(seqs[i] ?? 0) - 1, seqs[i] ?? 0]]));
}

/** completeQuery's statement; its answer, one row per job or (`requireAll`) the aggregate. */
function completeSql(requireAll: boolean): string {
  // All or nothing: one row always (an aggregate), so the count is checked even when nothing applied.
  const answer = requireAll
    ? `SELECT longhaul_require_count($9, count(*)::int) AS n, array_agg(id) AS ids, array_agg(fenced_token) AS tokens, array_agg(event_seq) AS seqs FROM u`
    : `SELECT id, fenced_token AS token, event_seq AS seq FROM u`;
  return statusChangeSql({
    with: `c AS (
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[], $4::jsonb[], $5::bigint[], $6::jsonb[], $7::bigint[], $8::bool[])
         AS c(id, token, cursor, state, processed, result, total, set_total))`,
    to: 'COMPLETED',
    from: ['RUNNING'],
    progress: 'before',
    set: `, checkpoint_cursor = c.cursor, checkpoint_state = c.state, checkpoint_at = now(), processed = j.processed + c.processed,
              total = CASE WHEN c.set_total THEN c.total ELSE j.total END, result = c.result`,
    using: 'c',
    where: 'j.id = ANY($1::uuid[]) AND j.id = c.id AND j.lease_token = c.token AND j.cancel_requested_at IS NULL',
    returning: 'c.token AS fenced_token',
    select: answer,
  });
}

const COMPLETE_SQL = completeSql(false);
const COMPLETE_ALL_SQL = completeSql(true);

function completeQuery(jobs: CompleteWithCheckpoint[], requireAll: boolean): Statement {
  return {
    name: requireAll ? STATEMENTS.completeAll : STATEMENTS.complete,
    text: requireAll ? COMPLETE_ALL_SQL : COMPLETE_SQL,
    values: [
      jobs.map((j) => j.jobId),
      jobs.map((j) => j.token),
      jobs.map((j) => JSON.stringify(j.cursor)),
      jobs.map((j) => JSON.stringify(j.state)),
      jobs.map((j) => j.processed),
      jobs.map((j) => JSON.stringify(j.result)),
      jobs.map((j) => j.total ?? null),
      jobs.map((j) => j.total !== undefined),
      ...(requireAll ? [jobs.length] : []),
    ],
  };
}

/** Why a fenced write was refused: the lease is gone, or a cancel was requested (lease still ours). */
export async function refusalReason(db: Queryable, jobId: string, token: string): Promise<'cancelled' | 'lease-lost'> {
  const { rows } = await db.query<{ cancel: boolean }>(
    `SELECT cancel_requested_at IS NOT NULL AS cancel FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'RUNNING'`,
    [jobId, token],
  );
  return rows[0]?.cancel === true ? 'cancelled' : 'lease-lost';
}

/**
 * Ends the lease (fenced) and records a failed attempt's error when given. Returns false when the
 * lease was not ours any more. The caller then moves the status (an action above) in the same transaction.
 * `token: null` is for a caller that holds no lease but has the row locked and saw no live lease on it.
 */
export async function releaseLease(
  db: Queryable,
  f: {
    jobId: string;
    token: string | null;
    error?: Json;
    deadLetter?: boolean;
    execution?: string;
    leaseLost?: boolean;
  },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE jobs SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
            error = COALESCE($3::jsonb, error),
            error_history = CASE WHEN $3::jsonb IS NULL THEN error_history ELSE error_history || jsonb_build_array($3::jsonb) END,
            dead_lettered_at = CASE WHEN $4 THEN now() ELSE dead_lettered_at END,
            execution_id = COALESCE($5::uuid, execution_id),
            lease_losses = lease_losses + CASE WHEN $6 THEN 1 ELSE 0 END
      WHERE id = $1 AND ($2::uuid IS NULL OR lease_token = $2)`,
    [
      f.jobId,
      f.token,
      f.error === undefined ? null : JSON.stringify(f.error),
      f.deadLetter === true,
      f.execution ?? null,
      f.leaseLost === true,
    ],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Fails a job for good because of its time limit, in the caller's transaction: `timeout` (it ran past
 * its timeout_seconds) or `expired` (never started by its expires_at). The lease ends (fenced by
 * `token`; null for a caller holding the row locked with no live lease), the error is recorded, and the
 * job is FAILED without a dead letter (the job's own code did not fail). The caller settles the
 * execution. Returns the `status` event's seq, or undefined when the lease was not `token`'s any more.
 */
export async function failOnTimeLimit(
  db: Queryable,
  f: {
    row: Pick<ClaimRow, 'id' | 'attempts'>;
    token: string | null;
    limit: 'timeout' | 'expired';
    announce: boolean;
  },
): Promise<{ seq: number | undefined } | undefined> {
  const entry: AttemptError = {
    kind: f.limit,
    message:
      f.limit === 'timeout'
        ? 'the job ran longer than its timeout_seconds in all; stopped at a chunk boundary'
        : 'the job had not started by its expires_at; it was not run',
    name: f.limit === 'timeout' ? 'JobTimeout' : 'JobExpired',
    attempt: f.row.attempts,
    at: new Date().toISOString(),
  };
  if (!(await releaseLease(db, { jobId: f.row.id, token: f.token, error: entry }))) return undefined;
  const moved = await failIfActive(db, f.row.id, { error: entry, announce: f.announce });
  return { seq: moved?.event_seq };
}

/**
 * PENDING jobs past a time limit, locked for the monitor: never started and past expires_at, or started
 * (waiting for a retry or a worker) and past their timeout.
 */
export async function lockTimeLimitedJobs(
  db: Queryable,
  limit: number,
): Promise<Array<{ id: string; attempts: number; time_limit: 'timeout' | 'expired' }>> {
  const { rows } = await db.query<{ id: string; attempts: number; time_limit: 'timeout' | 'expired' }>(
    `SELECT id, attempts, CASE WHEN started_at IS NULL THEN 'expired' ELSE 'timeout' END AS time_limit
       FROM jobs
      WHERE phase = 'ACTIVE' AND status = 'PENDING'
        AND ((started_at IS NULL AND expires_at <= now())
          OR (started_at IS NOT NULL AND timeout_seconds IS NOT NULL
              AND started_at + make_interval(secs => timeout_seconds) <= now()))
      LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit],
  );
  return rows;
}

/** Names the execution allowed to claim the job next (the row must be locked by the caller's transaction). */
export async function setExecution(db: Queryable, jobId: string, execution: string): Promise<void> {
  await db.query('UPDATE jobs SET execution_id = $2 WHERE id = $1', [jobId, execution]);
}

/** The name of the demand reading (tenantDemand), at the start of its text. */
export const TENANT_DEMAND = 'longhaul_worker_tenant_demand';

/**
 * Per tenant with active jobs, its jobs running (leased) and its jobs waiting for a worker: PENDING,
 * or RUNNING with no lease (handed over at the end of an execution's budget, its next execution queued),
 * for the fair share (src/worker/fair-share.ts). A tenant's PENDING jobs are counted up to `cap`: the
 * share needs no demand beyond the cluster's slots, and counting a whole backlog at every reading cost
 * time in proportion to it. The tenants with active jobs by a skip scan of `jobs_active` (tenant_id,
 * created_at), then at most `cap` of each one's PENDING jobs there (among them its RUNNING ones, as few
 * as the slots); the RUNNING jobs are running_jobs's rows (sql/100). Planned at each reading, not
 * prepared: a plan kept from a start with few jobs read all of them for the RUNNING ones at every
 * reading once a backlog came (`test/running-jobs.test.ts`). Its text begins with its name as a comment
 * (TENANT_DEMAND), which `pg_stat_activity` shows and the fetcher's tests watch for.
 */
export async function tenantDemand(
  db: Queryable,
  cap: number,
): Promise<Map<string, { running: number; waiting: number }>> {
  const { rows } = await db.query<{ tenant_id: string; running: number; waiting: number }>({
    text: `/* ${TENANT_DEMAND} */ WITH RECURSIVE pending AS (
             (SELECT tenant_id FROM jobs WHERE phase = 'ACTIVE' ORDER BY tenant_id LIMIT 1)
             UNION ALL
             SELECT (SELECT j.tenant_id FROM jobs j WHERE j.phase = 'ACTIVE' AND j.tenant_id > p.tenant_id
                      ORDER BY j.tenant_id LIMIT 1)
               FROM pending p WHERE p.tenant_id IS NOT NULL
           ),
           waiting AS (
             SELECT p.tenant_id, (SELECT count(*) FROM (SELECT FROM jobs j WHERE j.phase = 'ACTIVE' AND j.status = 'PENDING'
                                   AND j.tenant_id = p.tenant_id LIMIT $1) w)::int AS n
               FROM pending p WHERE p.tenant_id IS NOT NULL
           ),
           running AS (
             SELECT j.tenant_id, count(*) FILTER (WHERE j.lease_token IS NOT NULL)::int AS leased,
                    count(*) FILTER (WHERE j.lease_token IS NULL)::int AS unleased
               FROM jobs j WHERE ${RUNNING_SQL} GROUP BY j.tenant_id
           )
           SELECT tenant_id, coalesce(r.leased, 0) AS running, coalesce(w.n, 0) + coalesce(r.unleased, 0) AS waiting
             FROM waiting w FULL JOIN running r USING (tenant_id)
            WHERE w.n > 0 OR r.tenant_id IS NOT NULL`,
    values: [Math.max(1, cap)],
  });
  return new Map(rows.map((r) => [r.tenant_id, { running: r.running, waiting: r.waiting }]));
}

/**
 * Each tenant's leased RUNNING jobs as (group_id, n), for a statement over pg-boss's executions grouped
 * by tenant: the jobs its workers run now, running_jobs's rows (sql/100).
 */
export const LEASED_BY_TENANT_SQL = `SELECT j.tenant_id::text AS group_id, count(*)::int AS n FROM jobs j
    WHERE ${RUNNING_SQL} AND j.lease_token IS NOT NULL GROUP BY j.tenant_id`;

/** Running jobs whose lease ran out (their worker died or stalled), locked for the sweeper. */
export async function lockExpiredLeases(
  db: Queryable,
  limit: number,
): Promise<Array<ClaimRow & { lease_token: string }>> {
  const { rows } = await db.query<ClaimRow & { lease_token: string }>(
    `SELECT id, tenant_id, type, status, input, metadata, attempts, max_attempts, processed, total,
            checkpoint_cursor, checkpoint_state, checkpoint_at, COALESCE(execution_id, id) AS execution,
            lease_owner, false AS lease_live, true AS lease_lapsed, lease_losses, cancel_requested_at IS NOT NULL AS cancel_requested,
            error_history, trace_context, created_at, ${TIME_LIMIT_COLUMNS}, lease_token
       FROM jobs j WHERE ${RUNNING_SQL} AND lease_expires_at < now()
      ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit],
  );
  return rows;
}

/** A job's `expires_at`: expire-after seconds from when it may start (now, for a past or absent scheduled time). */
const EXPIRES_AT_SQL = (scheduledFor: string, seconds: string) =>
  `CASE WHEN ${seconds} IS NULL THEN NULL
        ELSE greatest(${scheduledFor}, now()) + make_interval(secs => ${seconds}) END`;

/**
 * The insert of new jobs (PENDING), as a statement to run in a CTE: every row of `rows` that is
 * `locked` (its Idempotency-Key's advisory lock held, or no key) and whose key is free becomes a job.
 * `rows` has the columns id, tenant_id, type, input, metadata, callback_url, max_attempts, key, hash,
 * scheduled_for, priority, timeout_seconds, expire_after, schedule_id, trace_context and locked;
 * `keySeconds` is the key's lifetime. A taken key inserts nothing (the caller resolves the conflict).
 */
export function insertJobsSql(rows: string, keySeconds: string): string {
  return `INSERT INTO jobs (id, tenant_id, type, input, metadata, callback_url, max_attempts,
                          idempotency_key, idempotency_hash, idempotency_expires_at,
                          scheduled_for, priority, timeout_seconds, expires_at, schedule_id, trace_context)
  SELECT id, tenant_id, type, input, metadata, callback_url, max_attempts, key, hash,
         CASE WHEN key IS NULL THEN NULL ELSE now() + make_interval(secs => ${keySeconds}) END,
         scheduled_for, priority, timeout_seconds, ${EXPIRES_AT_SQL('scheduled_for', 'expire_after')}, schedule_id,
         trace_context
    FROM ${rows} WHERE locked
  ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`;
}

/** A new job as its submitter describes it. */
export interface NewJob {
  tenantId: string;
  type: string;
  input: Json;
  metadata: Json | null;
  callbackUrl: string | null;
  maxAttempts: number;
  /** The trace context of the request (src/observability/tracing.ts), stored with the job. */
  traceContext?: Json | null;
  /** When the job may start (its first execution's start_after); absent or null: at once. */
  scheduledFor?: Date | null;
  /** Higher starts first among jobs a worker may run (pg-boss priority). (Default: 0) */
  priority?: number;
  /** Longest time from the job's first start to its end, in seconds; absent or null: no limit. */
  timeoutSeconds?: number | null;
  /** Seconds after it may start by which the job must have started, else it fails as expired; absent or null: no limit. */
  expireAfterSeconds?: number | null;
  /** The recurring schedule that created the job. */
  scheduleId?: string | null;
}

/**
 * Takes an Idempotency-Key from the job that holds it (its key expired, or that job is gone) and
 * inserts the new job `k.id` under it, with the request's fingerprint `k.hash` and the key's lifetime,
 * in the caller's transaction, which holds the key's advisory lock.
 */
export async function insertReleasingKey(
  db: Queryable,
  j: NewJob,
  k: { id: string; key: string; hash: string; keySeconds: number },
): Promise<JobRow | undefined> {
  await db.query('UPDATE jobs SET idempotency_key = NULL WHERE tenant_id = $1 AND idempotency_key = $2', [
    j.tenantId,
    k.key,
  ]);
  const { rows } = await db.query<JobRow>(
    `INSERT INTO jobs (id, tenant_id, type, input, metadata, callback_url, max_attempts,
                       idempotency_key, idempotency_hash, idempotency_expires_at,
                       scheduled_for, priority, timeout_seconds, expires_at, schedule_id, trace_context)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10),
             $11, $12, $13, ${EXPIRES_AT_SQL('$11::timestamptz', '$14::int')}, $15, $16)
     RETURNING ${JOB_COLUMNS}`,
    [
      k.id,
      j.tenantId,
      j.type,
      JSON.stringify(j.input),
      j.metadata === null ? null : JSON.stringify(j.metadata),
      j.callbackUrl,
      j.maxAttempts,
      k.key,
      k.hash,
      k.keySeconds,
      j.scheduledFor ?? null,
      j.priority ?? 0,
      j.timeoutSeconds ?? null,
      j.expireAfterSeconds ?? null,
      j.scheduleId ?? null,
      j.traceContext == null ? null : JSON.stringify(j.traceContext),
    ],
  );
  return rows[0];
}

/** Releases Idempotency-Keys older than their expiry, so the unique index stays small. */
export async function releaseExpiredKeys(db: Queryable): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE jobs SET idempotency_key = NULL, idempotency_hash = NULL
      WHERE idempotency_key IS NOT NULL AND idempotency_expires_at < now()`,
  );
  return rowCount ?? 0;
}

/**
 * Deletes up to `limit` jobs finished (COMPLETED, FAILED or CANCELLED) for longer than
 * `retentionSeconds`, with their events in the same statement (job_events has no foreign key to
 * cascade, sql/085) and their deliveries and attempts by cascade; a job that still has artifacts is
 * kept. Rows another transaction holds are skipped: an event is only written by a status change that
 * holds its job's row, so none is written for a job this deletes. Returns how many were deleted.
 */
export async function deleteFinishedJobs(db: Queryable, retentionSeconds: number, limit: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM jobs WHERE id IN (
         SELECT j.id FROM jobs j
          WHERE j.finished_at IS NOT NULL AND j.finished_at < now() - make_interval(secs => $1)
            AND j.status = ANY($2::text[])
            AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id)
          LIMIT $3
          FOR UPDATE SKIP LOCKED)
       RETURNING id),
     events AS (DELETE FROM job_events e USING gone WHERE e.job_id = gone.id)
     SELECT count(*)::int AS n FROM gone`,
    [retentionSeconds, [...TERMINAL_STATUSES], limit],
  );
  return rows[0]?.n ?? 0;
}
