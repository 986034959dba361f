/** The SQL of the `schedules` table: a tenant's recurring schedules, and claiming the occurrences due. */
import type { Json } from '../../packages/sdk/src/index.ts';
import type { Queryable } from '../db/pool.ts';

export type Overlap = 'skip' | 'allow';

export interface ScheduleJob {
  type: string;
  input: Json;
  metadata: Json | null;
  callback_url: string | null;
}

export interface ScheduleRow {
  id: string;
  tenant_id: string;
  name: string;
  cron: string;
  timezone: string;
  job: ScheduleJob;
  overlap: Overlap;
  paused_at: Date | null;
  next_fire_at: Date | null;
  last_fire_at: Date | null;
  last_job_id: string | null;
  last_outcome: 'created' | 'skipped' | null;
  created_at: Date;
  updated_at: Date;
}

/** What a schedule is made of (and what PATCH may change). */
export interface ScheduleSpec {
  name: string;
  cron: string;
  timezone: string;
  job: ScheduleJob;
  overlap: Overlap;
}

const COLUMNS = `id, tenant_id, name, cron, timezone,
  jsonb_build_object('type', job_type, 'input', job_input, 'metadata', job_metadata, 'callback_url', callback_url) AS job,
  overlap, paused_at, next_fire_at, last_fire_at, last_job_id, last_outcome, created_at, updated_at`;

export class ScheduleNameTaken extends Error {
  override name = 'ScheduleNameTaken';
}

function nameTaken(err: unknown, name: string): unknown {
  return (err as { code?: string }).code === '23505'
    ? new ScheduleNameTaken(`the tenant has a schedule named "${name}"`)
    : err;
}

/** A schedule's definition as the parameters $2..$9 of both the INSERT and the UPDATE. */
function definitionParams(s: ScheduleSpec): unknown[] {
  return [
    s.name,
    s.cron,
    s.timezone,
    s.job.type,
    JSON.stringify(s.job.input),
    s.job.metadata === null ? null : JSON.stringify(s.job.metadata),
    s.job.callback_url,
    s.overlap,
  ];
}

export async function createSchedule(
  db: Queryable,
  tenantId: string,
  id: string,
  s: ScheduleSpec,
  nextFireAt: Date,
): Promise<ScheduleRow> {
  try {
    const { rows } = await db.query<ScheduleRow>(
      `INSERT INTO schedules (id, tenant_id, name, cron, timezone, job_type, job_input, job_metadata, callback_url, overlap, next_fire_at)
       VALUES ($11, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${COLUMNS}`,
      [tenantId, ...definitionParams(s), nextFireAt, id],
    );
    const row = rows[0];
    if (row === undefined) throw new Error('schedule insert returned no row');
    return row;
  } catch (err) {
    throw nameTaken(err, s.name);
  }
}

export async function getSchedule(db: Queryable, tenantId: string, id: string): Promise<ScheduleRow | undefined> {
  const { rows } = await db.query<ScheduleRow>(`SELECT ${COLUMNS} FROM schedules WHERE id = $1 AND tenant_id = $2`, [
    id,
    tenantId,
  ]);
  return rows[0];
}

/** The row locked for a change (PATCH, pause, resume) in the caller's transaction. */
export async function lockSchedule(db: Queryable, tenantId: string, id: string): Promise<ScheduleRow | undefined> {
  const { rows } = await db.query<ScheduleRow>(
    `SELECT ${COLUMNS} FROM schedules WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
    [id, tenantId],
  );
  return rows[0];
}

/** A tenant's schedules, newest first, by keyset on (created_at, id). */
export async function listSchedules(
  db: Queryable,
  tenantId: string,
  page: { limit: number; after?: { createdAt: string; id: string } | undefined },
): Promise<{ rows: ScheduleRow[]; next: { createdAt: string; id: string } | null }> {
  const { rows } = await db.query<ScheduleRow & { created_key: string }>(
    `SELECT ${COLUMNS}, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key
       FROM schedules
      WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
      ORDER BY created_at DESC, id DESC LIMIT $4`,
    [tenantId, page.after?.createdAt ?? null, page.after?.id ?? null, page.limit + 1],
  );
  const more = rows.length > page.limit;
  const kept = more ? rows.slice(0, page.limit) : rows;
  const last = kept.at(-1);
  return {
    rows: kept.map(({ created_key: _k, ...r }) => r),
    next: more && last !== undefined ? { createdAt: last.created_key, id: last.id } : null,
  };
}

/** Writes a schedule's whole spec, pause and next occurrence (after lockSchedule). */
export async function updateSchedule(
  db: Queryable,
  id: string,
  s: ScheduleSpec,
  pausedAt: Date | null,
  nextFireAt: Date | null,
): Promise<ScheduleRow> {
  try {
    const { rows } = await db.query<ScheduleRow>(
      `UPDATE schedules SET name = $2, cron = $3, timezone = $4, job_type = $5, job_input = $6, job_metadata = $7,
              callback_url = $8, overlap = $9, paused_at = $10, next_fire_at = $11, updated_at = now()
        WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, ...definitionParams(s), pausedAt, nextFireAt],
    );
    const row = rows[0];
    if (row === undefined) throw new Error('schedule update returned no row');
    return row;
  } catch (err) {
    throw nameTaken(err, s.name);
  }
}

export async function deleteSchedule(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM schedules WHERE id = $1 AND tenant_id = $2', [id, tenantId]);
  return (rowCount ?? 0) > 0;
}

/** A due schedule, claimed, with the database's clock at the claim and whether its last job is still unfinished. */
export interface DueSchedule extends ScheduleRow {
  now: Date;
  last_job_active: boolean;
}

/**
 * Up to `limit` schedules whose next occurrence has come, locked for the caller's transaction; rows
 * another process holds are skipped (it is firing them).
 */
export async function claimDue(db: Queryable, limit: number): Promise<DueSchedule[]> {
  const { rows } = await db.query<DueSchedule>(
    `SELECT ${COLUMNS}, clock_timestamp() AS now,
            EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.last_job_id AND j.status IN ('PENDING', 'RUNNING')) AS last_job_active
       FROM schedules s
      WHERE next_fire_at <= clock_timestamp()
      ORDER BY next_fire_at
      LIMIT $1
      FOR UPDATE SKIP LOCKED`,
    [limit],
  );
  return rows;
}

/** Records an occurrence fired (or skipped) and the next one owed. */
export async function recordFiring(
  db: Queryable,
  id: string,
  f: { fireAt: Date; next: Date | null; outcome: 'created' | 'skipped'; jobId: string | null },
): Promise<void> {
  await db.query(
    `UPDATE schedules SET last_fire_at = $2, next_fire_at = $3, last_outcome = $4,
            last_job_id = coalesce($5, last_job_id)
      WHERE id = $1`,
    [id, f.fireAt, f.next, f.outcome, f.jobId],
  );
}
