/**
 * Claiming a job for an execution under a fresh lease token, with the row lock: the usual first
 * execution's job is claimed by the statement that fetched it (fair-fetch.ts); any other execution
 * comes here, and either claims the job, consuming the execution as that statement does, or settles
 * the execution that has nothing to run (a finished job, a stale duplicate, an unknown type, a lost
 * lease, a type at its limit here). Every claim takes one of the type's slots (type-slots.ts), given
 * back if the claim does not commit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { PgBoss } from 'pg-boss';
import { withTransaction, type Pool } from '../db/pool.ts';
import type { JobEventsPublisher } from '../jobs/events-publisher.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { isTerminal } from '../jobs/state.ts';
import type { Logger } from '../observability/logger.ts';
import { DEFAULT_BACKOFF, type AnyJobType } from '../../packages/sdk/src/index.ts';
import {
  completeExecution,
  deleteExecutions,
  failExecution,
  sendExecution,
  type ExecutionAttempt,
  type ExecutionData,
} from './executions.ts';
import { POLL_INTERVAL_MS } from './fetcher.ts';
import type { WorkerMetrics } from './metrics.ts';
import { failOnTimeLimit, lockJob, setExecution, startIfPending, takeLease, type ClaimRow } from '../jobs/lifecycle.ts';
import { leaseLostError, settleAttempt } from './attempts.ts';
import { TYPE_BUSY_DELAY_SECONDS } from './settler.ts';
import type { TypeSlots } from './type-slots.ts';

export class Claimer {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #registry: JobTypeRegistry;
  readonly #log: Logger;
  readonly #events: JobEventsPublisher;
  readonly #metrics: WorkerMetrics;
  readonly #slots: TypeSlots;
  readonly #owner: string;
  readonly #leaseSeconds: number;
  readonly #maxLeaseLosses: number;
  readonly #stopping: () => boolean;
  /** The executions' job table, where a claim deletes the execution it consumes (given by open()). */
  #table = '';

  constructor(deps: {
    pool: Pool;
    boss: PgBoss;
    registry: JobTypeRegistry;
    log: Logger;
    events: JobEventsPublisher;
    metrics: WorkerMetrics;
    slots: TypeSlots;
    /** This worker, as written to `lease_owner`. */
    owner: string;
    leaseSeconds: number;
    maxLeaseLosses: number;
    /** True once the runtime stops: a claim no longer waits out another worker's lease. */
    stopping: () => boolean;
  }) {
    this.#pool = deps.pool;
    this.#boss = deps.boss;
    this.#registry = deps.registry;
    this.#log = deps.log;
    this.#events = deps.events;
    this.#metrics = deps.metrics;
    this.#slots = deps.slots;
    this.#owner = deps.owner;
    this.#leaseSeconds = deps.leaseSeconds;
    this.#maxLeaseLosses = deps.maxLeaseLosses;
    this.#stopping = deps.stopping;
  }

  /** `table`: the executions' job table (queueTable). */
  open(table: string): void {
    this.#table = table;
  }

  /**
   * Claims the job for this execution, or settles the execution when it has nothing to run. A claim
   * takes a slot of the job's type, given back if the claim does not commit.
   */
  async claim(
    j: { data: ExecutionData },
    attempt: ExecutionAttempt,
    token: string,
  ): Promise<{ row: ClaimRow; type: AnyJobType } | undefined> {
    const jobId = j.data.jobId;
    const deadline = Date.now() + (this.#leaseSeconds + 5) * 1000;
    let reserved: string | undefined;
    /** The `status` event of a job settled here (its type unknown, or its lost lease taken over). */
    let settledSeq: number | undefined;
    for (;;) {
      const out = await withTransaction(this.#pool, async (c) => {
        const row = await lockJob(c, jobId);
        if (row === undefined || isTerminal(row.status) || row.execution !== attempt.id) {
          // Nothing to run: the job finished, or a newer execution owns it (this one is a stale duplicate).
          await completeExecution(this.#boss, c, attempt, {
            skipped: row === undefined ? 'no such job' : `job is ${row.status}, execution ${row.execution}`,
          });
          return 'skip' as const;
        }
        if (row.lease_live) return 'busy' as const;
        const type = this.#registry.get(row.type);
        if (row.status === 'RUNNING' && row.lease_lapsed) {
          // Its worker was lost, and pg-boss retried this execution (one an earlier version claimed without
          // consuming it) before a monitor took the job over: settled as the monitor would (a lost lease,
          // not a failed attempt), and a new execution carries on.
          const settled = await settleAttempt(c, this.#boss, {
            row,
            token: null,
            execution: attempt,
            kind: 'lease_lost',
            error: leaseLostError(row.lease_owner),
            maxLeaseLosses: this.#maxLeaseLosses,
            backoff: type?.backoff ?? DEFAULT_BACKOFF,
            announce: false,
          });
          settledSeq = settled?.seq;
          return settled?.outcome === 'dead' ? ('dead' as const) : ('skip' as const);
        }
        if (row.expired || row.timed_out) {
          // Past a time limit: the job fails for good without running (more).
          const limit = row.expired ? 'expired' : 'timeout';
          const failed = await failOnTimeLimit(c, { row, token: null, limit, announce: false });
          await completeExecution(this.#boss, c, attempt, { timeLimit: limit });
          settledSeq = failed?.seq;
          return 'limit' as const;
        }
        if (type === undefined) {
          // A retry may reach a worker that has the type's module. With no execution left the job fails
          // for good and is dead-lettered (replayable once a worker knows the type) rather than staying
          // PENDING, or RUNNING with no lease, where no monitor looks.
          const settled = await settleAttempt(c, this.#boss, {
            row,
            token: null,
            execution: attempt,
            kind: 'failure',
            error: {
              message: `unknown job type "${row.type}" (is its module in LONGHAUL_JOB_TYPES?)`,
              permanent: false,
            },
            final: attempt.retryCount >= attempt.retryLimit,
            maxLeaseLosses: this.#maxLeaseLosses,
            backoff: DEFAULT_BACKOFF,
            announce: false,
          });
          settledSeq = settled?.seq;
          return settled?.outcome === 'dead' ? ('dead' as const) : ('skip' as const);
        }
        if (!this.#slots.tryTake(type)) {
          // This process runs as many of this type as allowed: hand the job to a later execution (any worker).
          const next = await sendExecution(this.#boss, c, {
            jobId,
            tenantId: row.tenant_id,
            retriesLeft: attempt.retryLimit - attempt.retryCount,
            attemptsUsed: row.attempts,
            backoff: type.backoff ?? DEFAULT_BACKOFF,
            delaySeconds: TYPE_BUSY_DELAY_SECONDS,
            continuation: j.data.cont === true && attempt.retryCount === 0,
            priority: row.priority,
          });
          await setExecution(c, jobId, next);
          await completeExecution(this.#boss, c, attempt, { handedOver: next, reason: 'type concurrency' });
          return 'skip' as const;
        }
        reserved = type.name;
        // A continuation carries on the same attempt; a first execution or a retry is a new attempt.
        const attempts =
          j.data.cont === true && attempt.retryCount === 0 ? Math.max(1, row.attempts) : row.attempts + 1;
        await takeLease(c, {
          jobId,
          token,
          owner: this.#owner,
          leaseSeconds: this.#leaseSeconds,
          attempts,
          execution: attempt.id,
        });
        await deleteExecutions(c, this.#table, [attempt]);
        const seq = row.status === 'PENDING' ? await startIfPending(c, jobId) : undefined;
        return { row: { ...row, attempts, status: 'RUNNING' as const }, type, seq };
      }).catch((err: unknown) => {
        // The claim did not commit: its slot is not taken.
        if (reserved !== undefined) this.#slots.release(reserved);
        reserved = undefined;
        throw err;
      });
      if (settledSeq !== undefined) this.#events.publish(jobId, settledSeq);
      if (out === 'skip') return undefined;
      if (out === 'limit') {
        this.#metrics.executions.inc({ outcome: 'failed' });
        this.#log.warn({ job_id: jobId, execution: attempt.id }, 'job failed: past its time limit');
        return undefined;
      }
      if (out === 'dead') {
        this.#metrics.executions.inc({ outcome: 'failed' });
        this.#log.error({ job_id: jobId, execution: attempt.id }, 'job failed for good; dead-lettered');
        return undefined;
      }
      if (out !== 'busy') {
        if (out.seq !== undefined) this.#events.publish(jobId, out.seq);
        return out;
      }
      // The previous holder's lease is still live (pg-boss retried an execution an earlier version claimed
      // without consuming it, before the lease ran out): wait it out.
      if (Date.now() > deadline || this.#stopping()) {
        await failExecution(this.#boss, this.#pool, attempt, { message: 'the job was still leased by another worker' });
        return undefined;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  }
}
