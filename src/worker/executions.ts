/**
 * pg-boss executions of longhaul jobs. A job runs as a chain of executions (one pg-boss job each, never
 * longer than the execution budget); the next one is sent in the same transaction as the checkpoint
 * that hands over, and the jobs row names it (`execution_id`), so only it may claim the job.
 */
import { randomUUID } from 'node:crypto';
import type { PgBoss } from 'pg-boss';
import { bossDb, captureBossSql, type PipelinedQuery, type Queryable } from '../db/pool.ts';
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

/** Completes many executions in one statement (each fenced to the attempt fetched). */
export async function completeExecutions(
  boss: PgBoss,
  db: Queryable,
  attempts: Array<Pick<ExecutionAttempt, 'id' | 'retryCount'>>,
): Promise<void> {
  await boss.complete(
    QUEUES.jobs,
    attempts.map((a) => ({ id: a.id, retryCount: a.retryCount })),
    null,
    { db: bossDb(db) },
  );
}

/**
 * pg-boss's own statement completing these executions, as completeExecutions would run it, captured
 * through the `db` option without running it: a statement for a pipelined transaction. Undefined if
 * pg-boss did not issue exactly one statement.
 */
export async function completeExecutionsQuery(
  boss: PgBoss,
  attempts: Array<Pick<ExecutionAttempt, 'id' | 'retryCount'>>,
): Promise<PipelinedQuery | undefined> {
  const captured = await captureBossSql(
    (db) =>
      boss.complete(
        QUEUES.jobs,
        attempts.map((a) => ({ id: a.id, retryCount: a.retryCount })),
        null,
        { db },
      ),
    // The answer pg-boss reads from its settle statements: the count and ids settled.
    [{ count: '0', ids: [] }],
  );
  return captured.length === 1 ? captured[0] : undefined;
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
