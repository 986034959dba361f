/**
 * pg-boss executions of longhaul jobs. A job runs as a chain of executions (one pg-boss job each, never
 * longer than the execution budget); the next one is sent in the same transaction as the checkpoint
 * that hands over, and the jobs row names it (`execution_id`), so only it may claim the job.
 */
import { randomUUID } from 'node:crypto';
import type { PgBoss } from 'pg-boss';
import { bossDb, type Queryable } from '../db/pool.ts';
import type { StatementPart } from '../jobs/lifecycle.ts';
import { QUEUES } from '../jobs/queues.ts';
import type { Json } from '../../packages/sdk/src/index.ts';

/** What every execution carries; `cont` marks a continuation of the same attempt (not a retry). */
export interface ExecutionData {
  jobId: string;
  cont?: boolean;
}

/** The attempt of an execution a worker fetched: pg-boss settles fenced to it. */
export interface ExecutionAttempt {
  id: string;
  retryCount: number;
  retryLimit: number;
}

export interface NextExecution {
  jobId: string;
  tenantId: string;
  /** Retries left to this job (max_attempts minus attempts used). */
  retriesLeft: number;
  /** Attempts used so far, to continue the backoff where it was. */
  attemptsUsed: number;
  backoff: { initialSeconds: number; maxSeconds: number };
  /** Seconds to wait before it may start (default 0). */
  delaySeconds?: number;
  /** The job's priority: a later execution waits in line as its first did. (Default: 0) */
  priority?: number;
  continuation: boolean;
}

/** Sends the next execution of a job through `db` (the caller's transaction); returns its id. */
export async function sendExecution(boss: PgBoss, db: Queryable, n: NextExecution): Promise<string> {
  const id = randomUUID();
  const data: ExecutionData = n.continuation ? { jobId: n.jobId, cont: true } : { jobId: n.jobId };
  const initial = Math.min(n.backoff.maxSeconds, n.backoff.initialSeconds * 2 ** Math.max(0, n.attemptsUsed - 1));
  await boss.send(QUEUES.jobs, data, {
    id,
    // The tier names the tenant too: a tenant's own running limit is a pg-boss tier limit (src/worker/fetcher.ts).
    group: { id: n.tenantId, tier: n.tenantId },
    retryLimit: Math.max(0, n.retriesLeft),
    retryDelay: Math.max(1, Math.round(initial)),
    retryDelayMax: n.backoff.maxSeconds,
    retryBackoff: true,
    priority: n.priority ?? 0,
    ...(n.delaySeconds !== undefined && n.delaySeconds > 0 ? { startAfter: n.delaySeconds } : {}),
    db: bossDb(db),
  });
  return id;
}

/** Completes an execution (fenced to the attempt fetched). */
export async function completeExecution(
  boss: PgBoss,
  db: Queryable,
  a: Pick<ExecutionAttempt, 'id' | 'retryCount'>,
  output?: { [k: string]: Json },
): Promise<void> {
  await boss.complete(QUEUES.jobs, { id: a.id, retryCount: a.retryCount }, output ?? null, { db: bossDb(db) });
}

/**
 * pg-boss's fence when it completes an execution (its complete, fenced to the attempt: the execution
 * as fetched, still active), over $1 the queue, $2 the ids and $3 their `id:retryCount` pairs.
 * test/pgboss-drift.test.ts compares it with pg-boss's own statement.
 */
export const EXECUTION_FENCE_SQL = `name = $1 AND id = ANY($2::uuid[]) AND state = 'active'
  AND (id::text || ':' || retry_count::text) = ANY($3::text[])`;

/**
 * Deletes the executions of jobs that completed, each fenced as pg-boss's complete is, where pg-boss
 * would keep the row as `completed`: a non-HOT update of a wide row adding an entry to each of its
 * indexes, kept for nobody to read (the job's outcome and history are in its jobs row, and pg-boss
 * only counts its completed rows and deletes them later). Only these are deleted: an execution that
 * ends any other way (handed over, cancelled, skipped, timed out, its lease lost, dead-lettered) stays
 * a pg-boss completion with its output, which says why. As a part of another statement (the
 * completion's), in `table` (the queue's job table), with EXECUTION_FENCE_SQL's parameters renumbered
 * from the part's first.
 */
export function deleteExecutionsPart(
  table: string,
  attempts: Array<Pick<ExecutionAttempt, 'id' | 'retryCount'>>,
): StatementPart {
  return {
    key: `delete_executions_${table}`,
    cte: (p) =>
      `DELETE FROM pgboss.${table} WHERE ${EXECUTION_FENCE_SQL.replace(/\$([123])\b/g, (_, n: string) => `$${p + Number(n) - 1}`)}`,
    values: [QUEUES.jobs, attempts.map((a) => a.id), attempts.map((a) => `${a.id}:${a.retryCount}`)],
  };
}

/** deleteExecutionsPart as a statement of its own, through `db` (the caller's transaction). */
export async function deleteExecutions(
  db: Queryable,
  table: string,
  attempts: Array<Pick<ExecutionAttempt, 'id' | 'retryCount'>>,
): Promise<void> {
  const part = deleteExecutionsPart(table, attempts);
  await db.query({ name: `longhaul_${part.key}`, text: part.cte(1), values: part.values });
}

/** Fails an execution so that pg-boss retries it with backoff (or dead-letters it when out of retries). */
export async function failExecution(
  boss: PgBoss,
  db: Queryable,
  a: Pick<ExecutionAttempt, 'id' | 'retryCount'>,
  error: { [k: string]: Json },
): Promise<void> {
  await boss.fail(QUEUES.jobs, { id: a.id, retryCount: a.retryCount }, error, { db: bossDb(db) });
}

/**
 * Puts an execution into the dead-letter queue for good. Out of retries, pg-boss's own dead-lettering
 * does it (fail); a permanent error before that cannot skip pg-boss's retries, so the execution is
 * completed and its dead letter written directly, in the same shape.
 */
export async function deadLetterExecution(
  boss: PgBoss,
  db: Queryable,
  a: ExecutionAttempt,
  jobId: string,
  output: { [k: string]: Json },
): Promise<void> {
  if (a.retryCount >= a.retryLimit) {
    await failExecution(boss, db, a, output);
    return;
  }
  await completeExecution(boss, db, a, output);
  await boss.send(QUEUES.jobsDead, { jobId, error: output }, { db: bossDb(db) });
}

/** Removes a job's entries from the dead-letter queue (when it is replayed). */
export async function removeDeadLetters(boss: PgBoss, db: Queryable, jobId: string): Promise<void> {
  const dead = await boss.findJobs(QUEUES.jobsDead, { data: { jobId }, db: bossDb(db) });
  if (dead.length > 0)
    await boss.deleteJob(
      QUEUES.jobsDead,
      dead.map((j) => j.id),
      { db: bossDb(db) },
    );
}
