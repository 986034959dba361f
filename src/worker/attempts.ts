/**
 * Settling an attempt that did not complete — a failed step, an unknown type, a lost lease — in one
 * transaction: the job's row through its lifecycle (src/jobs/lifecycle.ts) and what runs it next
 * through pg-boss (a retry, a continuation or a dead letter). One function for the three places that
 * settle one (the settler, the locked claim and the monitor's lease sweep), so they cannot disagree.
 */
import type { PgBoss } from 'pg-boss';
import type { Queryable } from '../db/pool.ts';
import {
  failIfActive,
  releaseLease,
  returnToPendingIfRunning,
  setExecution,
  type ClaimRow,
} from '../jobs/lifecycle.ts';
import type { AttemptError } from '../jobs/model.ts';
import {
  backoffBaseSeconds,
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
  /**
   * The execution, while pg-boss still holds it: the locked claim settles one before it takes the
   * lease, and pg-boss then completes, retries or dead-letters it. Absent once a claim consumed it
   * (every attempt that ran): a retry is then a new execution, sent after the backoff.
   */
  execution?: Pick<ExecutionAttempt, 'id' | 'retryCount'>;
  kind: AttemptEnd;
  /** What went wrong; kind, attempt and time are added. */
  error: Pick<AttemptError, 'message' | 'name' | 'permanent'>;
  /** A failure that no retry can mend, or one with no execution left to retry it: the job fails for good. */
  final?: boolean;
  /** Takeovers allowed before a job that keeps losing its worker is dead-lettered. */
  maxLeaseLosses: number;
  /** The job type's retry backoff, for the execution that runs it next. */
  backoff: { initialSeconds: number; maxSeconds: number };
  /** Notify the `status` event on commit (the caller announces it otherwise). */
  announce: boolean;
}

export type SettleOutcome = {
  /** `retry`: a new attempt after the backoff; `continued`: a new execution carries on the same attempt. */
  outcome: 'retry' | 'continued' | 'dead';
  /** The error_history entry written. */
  entry: AttemptError;
  seq: number | undefined;
};

/**
 * Settles an attempt that did not complete, in the caller's transaction: the lease ends, the error is
 * appended to error_history with its kind, and the job either goes back to PENDING or fails for good
 * (FAILED, dead-lettered). A failure spends an attempt: the retry is a new execution sent after the
 * backoff (retryDelaySeconds), or pg-boss's own retry of the execution it still holds. A lost lease
 * spends none: the attempt carries on from its checkpoint in a new continuation execution
 * that keeps the job's remaining retries, and only LONGHAUL_MAX_LEASE_LOSSES lost leases in all
 * dead-letter it (a job that kills every worker it runs on must still end). Returns undefined when
 * the lease was not `token`'s any more (nothing changed).
 */
export async function settleAttempt(db: Queryable, boss: PgBoss, s: Settlement): Promise<SettleOutcome | undefined> {
  const { row, execution } = s;
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
  if (dead)
    await deadLetterExecution(boss, db, execution, row.id, { ...entry, history: [...row.error_history, entry] });
  else if (!lost && execution !== undefined) await failExecution(boss, db, execution, entry);
  else {
    const next = await sendExecution(boss, db, {
      jobId: row.id,
      tenantId: row.tenant_id,
      retriesLeft: row.max_attempts - row.attempts,
      attemptsUsed: row.attempts,
      backoff: s.backoff,
      continuation: lost,
      ...(lost ? {} : { delaySeconds: retryDelaySeconds(s.backoff, row.attempts) }),
      priority: row.priority,
    });
    await setExecution(db, row.id, next);
    // A no-op if pg-boss already failed it (its own heartbeat check): its retry then finds the job owned
    // by the new execution and skips.
    if (execution !== undefined) await completeExecution(boss, db, execution, { lease_lost: true, continued_by: next });
  }
  return { outcome: dead ? 'dead' : lost ? 'continued' : 'retry', entry, seq: moved?.event_seq };
}

/**
 * Seconds before the next attempt of a job whose attempt `attempts` failed: exponential backoff with
 * jitter, as pg-boss retries its jobs (the base doubling from `initialSeconds` with each attempt, times
 * one to two, at most `maxSeconds`), in whole seconds, at least one.
 */
export function retryDelaySeconds(
  backoff: { initialSeconds: number; maxSeconds: number },
  attempts: number,
  random: number = Math.random(),
): number {
  const base = Math.max(1, backoffBaseSeconds(backoff, attempts));
  return Math.max(1, Math.round(Math.min(backoff.maxSeconds, base * (1 + random))));
}

/** The error entry of a lease that ran out, naming the worker that held it. */
export function leaseLostError(owner: string | null): Settlement['error'] {
  return {
    message: `worker lost: lease expired (owner ${owner ?? 'unknown'})`,
    name: 'LeaseExpired',
    permanent: false,
  };
}
