/**
 * The dead-letter queue as operators see it: jobs that failed for good (attempts exhausted or a
 * permanent error), with the error of every attempt, and their replay. A replay gives the job a fresh
 * set of attempts and a new execution, from its last checkpoint or from the start, in one transaction.
 */
import type { PgBoss } from 'pg-boss';
import { withTransaction, type Pool, type Queryable } from '../db/pool.ts';
import { JOB_COLUMNS, type JobRow } from '../jobs/model.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { replayIfFailed } from '../jobs/lifecycle.ts';
import { removeDeadLetters, sendExecution } from './executions.ts';
import { DEFAULT_BACKOFF, type Json } from '../../packages/sdk/src/index.ts';

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

export type ReplayFrom = 'checkpoint' | 'start';

export type ReplayOutcome =
  { kind: 'replayed'; job: JobRow } | { kind: 'not-found' } | { kind: 'not-failed'; job: JobRow };

/** Replays one FAILED job: fresh attempts and lease-loss budget, a new execution, PENDING; from its checkpoint or from scratch. */
export async function replayJob(
  db: Queryable,
  boss: PgBoss,
  registry: JobTypeRegistry,
  tenantId: string,
  jobId: string,
  from: ReplayFrom,
): Promise<ReplayOutcome> {
  const { rows } = await db.query<JobRow>(
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
    [jobId, tenantId],
  );
  const job = rows[0];
  if (job === undefined) return { kind: 'not-found' };
  if (job.status !== 'FAILED') return { kind: 'not-failed', job };
  const type = registry.get(job.type);
  const execution = await sendExecution(boss, db, {
    jobId,
    tenantId,
    retriesLeft: job.max_attempts - 1,
    attemptsUsed: 0,
    backoff: type?.backoff ?? DEFAULT_BACKOFF,
    continuation: false,
    priority: job.priority,
  });
  await removeDeadLetters(boss, db, jobId);
  const replayed = await replayIfFailed(db, jobId, { execution, from });
  if (replayed === undefined) throw new Error(`job ${jobId} could not move from FAILED to PENDING`);
  return { kind: 'replayed', job: replayed };
}

/** Replays every dead-lettered job of a tenant matching the filter (oldest first, at most `limit`). */
export async function replayMany(
  pool: Pool,
  boss: PgBoss,
  registry: JobTypeRegistry,
  tenantId: string,
  f: { type?: string | undefined; since?: Date | undefined; until?: Date | undefined; limit: number; from: ReplayFrom },
): Promise<string[]> {
  return withTransaction(pool, async (c) => {
    const { rows } = await c.query<{ id: string }>(
      `SELECT id FROM jobs
        WHERE tenant_id = $1 AND dead_lettered_at IS NOT NULL AND status = 'FAILED'
          AND ($2::text IS NULL OR type = $2)
          AND ($3::timestamptz IS NULL OR dead_lettered_at >= $3)
          AND ($4::timestamptz IS NULL OR dead_lettered_at < $4)
        ORDER BY dead_lettered_at, id LIMIT $5 FOR UPDATE SKIP LOCKED`,
      [tenantId, f.type ?? null, f.since ?? null, f.until ?? null, f.limit],
    );
    const ids: string[] = [];
    for (const { id } of rows) {
      const out = await replayJob(c, boss, registry, tenantId, id, f.from);
      if (out.kind === 'replayed') ids.push(id);
    }
    return ids;
  });
}

/** Replays the chosen FAILED jobs of a tenant in one transaction; returns the ids replayed (others are skipped). */
export async function replaySelected(
  pool: Pool,
  boss: PgBoss,
  registry: JobTypeRegistry,
  tenantId: string,
  ids: readonly string[],
  from: ReplayFrom,
): Promise<string[]> {
  return withTransaction(pool, async (c) => {
    const replayed: string[] = [];
    for (const id of ids) {
      const out = await replayJob(c, boss, registry, tenantId, id, from);
      if (out.kind === 'replayed') replayed.push(id);
    }
    return replayed;
  });
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
