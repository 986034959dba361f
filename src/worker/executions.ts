/**
 * pg-boss executions of longhaul jobs. A job runs as a chain of executions (one pg-boss job each, never
 * longer than the execution budget); the next one is sent in the same transaction as the checkpoint
 * that hands over, or as the failure that retries, and the jobs row names it (`execution_id`), so only
 * it may claim the job. The claim consumes the execution (fair-fetch.ts, claimer.ts): pg-boss delivers
 * executions, and the jobs row carries each attempt from its claim to its end.
 */
import { randomUUID } from 'node:crypto';
import type { PgBoss } from 'pg-boss';
import { bossDb, type Queryable, type Statement } from '../db/pool.ts';
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

/** The backoff's base after `attemptsUsed` attempts: the initial delay, doubling with each attempt after the first. */
export function backoffBaseSeconds(backoff: { initialSeconds: number }, attemptsUsed: number): number {
  return backoff.initialSeconds * 2 ** Math.max(0, attemptsUsed - 1);
}

/** Sends the next execution of a job through `db` (the caller's transaction); returns its id. */
export async function sendExecution(boss: PgBoss, db: Queryable, n: NextExecution): Promise<string> {
  const id = randomUUID();
  const data: ExecutionData = n.continuation ? { jobId: n.jobId, cont: true } : { jobId: n.jobId };
  const initial = Math.min(n.backoff.maxSeconds, backoffBaseSeconds(n.backoff, n.attemptsUsed));
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
 * Deletes executions the locked claim consumed, each fenced as pg-boss's complete is (the execution
 * as fetched, still active), through `db` (the claim's transaction), in `table` (the queue's job
 * table). From the claim on, the job's row carries the attempt: pg-boss's row would be a second record
 * of it, updated at every end of the attempt, each update a new entry in each of its indexes.
 */
export async function deleteExecutions(
  db: Queryable,
  table: string,
  attempts: Array<Pick<ExecutionAttempt, 'id' | 'retryCount'>>,
): Promise<void> {
  await db.query(deleteExecutionsQuery(table, attempts));
}

/** deleteExecutions' statement, with EXECUTION_FENCE_SQL's parameters. */
export function deleteExecutionsQuery(
  table: string,
  attempts: Array<Pick<ExecutionAttempt, 'id' | 'retryCount'>>,
): Statement {
  return {
    name: `longhaul_delete_executions_${table}`,
    text: `DELETE FROM pgboss.${table} WHERE ${EXECUTION_FENCE_SQL}`,
    values: [QUEUES.jobs, attempts.map((a) => a.id), attempts.map((a) => `${a.id}:${a.retryCount}`)],
  };
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
 * Puts a job into the dead-letter queue for good: its dead letter, and `execution` completed with the
 * same output when pg-boss still holds it (one the locked claim settles before taking the lease; a
 * claim consumes the execution it runs).
 */
export async function deadLetterExecution(
  boss: PgBoss,
  db: Queryable,
  execution: Pick<ExecutionAttempt, 'id' | 'retryCount'> | undefined,
  jobId: string,
  output: { [k: string]: Json },
): Promise<void> {
  if (execution !== undefined) await completeExecution(boss, db, execution, output);
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
