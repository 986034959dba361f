/**
 * Settling an attempt that did not complete — a failed step, an unknown type, a lost lease — in one
 * transaction: the job's row through its lifecycle (src/jobs/lifecycle.ts) and the execution through
 * pg-boss (retried, continued or dead-lettered). One function for the three places that settle one
 * (the settler, the locked claim and the monitor's lease sweep), so they cannot disagree.
 */
import type { PgBoss } from 'pg-boss';
import { bossDb, type Queryable } from '../db/pool.ts';
import {
  failIfActive,
  releaseLease,
  returnToPendingIfRunning,
  setExecution,
  type ClaimRow,
} from '../jobs/lifecycle.ts';
import type { AttemptError } from '../jobs/model.ts';
import { QUEUES } from '../jobs/queues.ts';
import {
  completeExecution,
  deadLetterExecution,
  failExecution,
  sendExecution,
  type ExecutionAttempt,
} from './executions.ts';

/**
 * What ended an attempt: `failure`, the job's own error (it spends one of max_attempts); `lease_lost`,
 * its worker was lost (killed, hung or cut off until its lease ran out), which says nothing about the
 * job and spends one of the lease-loss budget instead.
 */
export type AttemptEnd = 'failure' | 'lease_lost';

export interface Settlement {
  /** The job as its claimer or the sweeper read it (locked, or leased by `token`). */
  row: ClaimRow;
  /** The lease to fence on; null for a caller that holds the row locked and saw no live lease on it. */
  token: string | null;
  /** The execution that ran the attempt; without retryLimit it is read from pg-boss if needed. */
  attempt: Pick<ExecutionAttempt, 'id' | 'retryCount'> & { retryLimit?: number };
  kind: AttemptEnd;
  /** What went wrong; kind, attempt and time are added. */
  error: Pick<AttemptError, 'message' | 'name' | 'permanent'>;
  /** A failure that no retry can mend, or one with no execution left to retry it: the job fails for good. */
  final?: boolean;
  /** Takeovers allowed before a job that keeps losing its worker is dead-lettered. */
  maxLeaseLosses: number;
  /** The job type's retry backoff, for the execution that continues after a lost lease. */
  backoff: { initialSeconds: number; maxSeconds: number };
  /** Notify the `status` event on commit (the caller announces it otherwise). */
  announce: boolean;
}

export type SettleOutcome = {
  /** `retry`: pg-boss retries the execution after backoff; `continued`: a new execution carries on the same attempt. */
  outcome: 'retry' | 'continued' | 'dead';
  /** The error_history entry written. */
  entry: AttemptError;
  seq: number | undefined;
};

/**
 * Settles an attempt that did not complete, in the caller's transaction: the lease ends, the error is
 * appended to error_history with its kind, and the job either goes back to PENDING or fails for good
 * (FAILED, dead-lettered). A failure spends an attempt: pg-boss retries the execution with backoff. A
 * lost lease spends none: the attempt carries on from its checkpoint in a new continuation execution
 * that keeps the job's remaining retries, and only LONGHAUL_MAX_LEASE_LOSSES lost leases in all
 * dead-letter it (a job that kills every worker it runs on must still end). Returns undefined when
 * the lease was not `token`'s any more (nothing changed).
 */
export async function settleAttempt(db: Queryable, boss: PgBoss, s: Settlement): Promise<SettleOutcome | undefined> {
  const { row, attempt } = s;
  const lost = s.kind === 'lease_lost';
  const losses = row.lease_losses + (lost ? 1 : 0);
  const dead = s.final === true || (lost ? losses >= s.maxLeaseLosses : row.attempts >= row.max_attempts);
  const entry: AttemptError = {
    kind: s.kind,
    ...s.error,
    attempt: row.attempts,
    ...(lost ? { lease_losses: losses } : {}),
    at: new Date().toISOString(),
  };
  if (!(await releaseLease(db, { jobId: row.id, token: s.token, error: entry, deadLetter: dead, leaseLost: lost })))
    return undefined;
  const move = { error: entry, announce: s.announce };
  const moved = dead ? await failIfActive(db, row.id, move) : await returnToPendingIfRunning(db, row.id, move);
  if (dead) {
    const retryLimit =
      attempt.retryLimit ?? (await boss.getJobById(QUEUES.jobs, attempt.id, { db: bossDb(db) }))?.retryLimit ?? 0;
    await deadLetterExecution(boss, db, { ...attempt, retryLimit }, row.id, {
      ...entry,
      history: [...row.error_history, entry],
    });
  } else if (lost) {
    const next = await sendExecution(boss, db, {
      jobId: row.id,
      tenantId: row.tenant_id,
      retriesLeft: row.max_attempts - row.attempts,
      attemptsUsed: row.attempts,
      backoff: s.backoff,
      continuation: true,
      priority: row.priority,
    });
    await setExecution(db, row.id, next);
    // A no-op if pg-boss already failed it (its own heartbeat check): its retry then finds the job owned
    // by the new execution and skips.
    await completeExecution(boss, db, attempt, { lease_lost: true, continued_by: next });
  } else await failExecution(boss, db, attempt, entry);
  return { outcome: dead ? 'dead' : lost ? 'continued' : 'retry', entry, seq: moved?.event_seq };
}

/** The error entry of a lease that ran out, naming the worker that held it. */
export function leaseLostError(owner: string | null): Settlement['error'] {
  return {
    message: `worker lost: lease expired (owner ${owner ?? 'unknown'})`,
    name: 'LeaseExpired',
    permanent: false,
  };
}
