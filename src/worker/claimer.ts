/**
 * Claiming a job for an execution, under a fresh lease token. Two paths: the usual first execution is
 * claimed together with start()'s checkpoint in one statement with no row lock; anything else takes
 * the row lock and either claims the job or settles the execution that has nothing to run (a finished
 * job, a stale duplicate, an unknown type, a lost lease, a type at its limit here). Every claim takes
 * one of the type's slots (type-slots.ts), given back if the claim does not commit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobWithMetadata, PgBoss } from 'pg-boss';
import { isConnectionError, withTransaction, type Pool } from '../db/pool.ts';
import type { JobEventsPublisher } from '../jobs/events-publisher.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { isTerminal } from '../jobs/state.ts';
import type { Logger } from '../observability/logger.ts';
import { DEFAULT_BACKOFF, type AnyJobType, type Json, type JobTypeDefinition } from '../../packages/sdk/src/index.ts';
import {
  completeExecution,
  failExecution,
  sendExecution,
  type ExecutionAttempt,
  type ExecutionData,
} from './executions.ts';
import { POLL_INTERVAL_MS } from './fetcher.ts';
import { GroupCommit } from './group-commit.ts';
import { LazyTransaction } from './lazy-transaction.ts';
import type { WorkerMetrics } from './metrics.ts';
import { jobContext } from './step-runner.ts';
import {
  claimWithCheckpoint,
  failOnTimeLimit,
  GROUP_MAX,
  lockJob,
  peekJobs,
  setExecution,
  startIfPending,
  takeLease,
  writeKey,
  type ClaimRow,
  type ClaimWithCheckpoint,
  type EventPair,
} from '../jobs/lifecycle.ts';
import { leaseLostError, settleAttempt } from './attempts.ts';
import type { TypeSlots } from './type-slots.ts';

/** A job whose type is at its concurrency limit in this process is handed back for this long. */
const TYPE_BUSY_DELAY_SECONDS = 1;

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
  /** Group-committed reads of the jobs a claim with start() looks at first. */
  readonly #peeks: GroupCommit<string, ClaimRow | undefined>;
  /** Group commits of the claims whose start() wrote nothing through ctx.db. */
  readonly #claims: GroupCommit<ClaimWithCheckpoint, EventPair | undefined>;

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
    this.#peeks = new GroupCommit(async (ids) => {
      const rows = await peekJobs(this.#pool, ids);
      return ids.map((id) => rows.get(id));
    }, GROUP_MAX);
    this.#claims = new GroupCommit(async (claims) => {
      const seqs = await claimWithCheckpoint(this.#pool, claims, {
        owner: this.#owner,
        seconds: this.#leaseSeconds,
      });
      return claims.map((c) => seqs.get(writeKey(c.jobId, c.token)));
    }, GROUP_MAX);
  }

  /**
   * The usual first execution of a job, claimed together with start()'s checkpoint in one statement
   * (one commit instead of two, and no row lock while start() runs): the job is read without a lock,
   * start() runs in the step transaction, and claimWithCheckpoint ends it, applying only if the row
   * is still as it was read (lease, RUNNING, first checkpoint, both events). Anything else (a job
   * already started, a live lease, a type at its limit, a row that changed meanwhile) returns `{}`
   * for the locked claim, start()'s writes rolled back; start() throwing returns its error, which
   * becomes the attempt's outcome once the locked claim has taken the job.
   */
  async claimWithStart(
    j: JobWithMetadata<ExecutionData>,
    attempt: ExecutionAttempt,
    token: string,
    signal: AbortSignal,
  ): Promise<{ row: ClaimRow; type: AnyJobType; log: Logger } | { error: unknown } | Record<string, never>> {
    const jobId = j.data.jobId;
    const seen = await this.#peeks.submit(jobId).catch(() => undefined);
    if (
      seen === undefined ||
      seen.status !== 'PENDING' ||
      seen.checkpoint_at !== null ||
      seen.execution !== attempt.id ||
      seen.lease_live ||
      seen.cancel_requested ||
      seen.expired ||
      seen.timed_out
    )
      return {};
    const type = this.#registry.get(seen.type);
    if (type === undefined || !this.#slots.tryTake(type)) return {};
    const release = () => this.#slots.release(type.name);
    const attempts = j.data.cont === true && attempt.retryCount === 0 ? Math.max(1, seen.attempts) : seen.attempts + 1;
    const row: ClaimRow = { ...seen, attempts, status: 'RUNNING' };
    const log = this.#log.child({ job_id: jobId, type: type.name, attempt: attempts });
    const def = type as JobTypeDefinition<unknown, Json, Json>;
    const tx = new LazyTransaction(this.#pool);
    try {
      let s: Awaited<ReturnType<typeof def.start>>;
      try {
        s = await def.start(jobContext(row, type, signal, log, tx.db));
        signal.throwIfAborted();
      } catch (error) {
        release();
        return { error };
      }
      const t0 = performance.now();
      const cursor = s.cursor ?? null;
      const total = s.total ?? null;
      const claim: ClaimWithCheckpoint = {
        jobId,
        token,
        attemptsSeen: seen.attempts,
        attempts,
        execution: attempt.id,
        executionRetry: attempt.retryCount,
        cursor,
        state: s.state,
        total,
      };
      // Group-committed with other jobs' claims when start() wrote nothing, else the last statement of its transaction.
      const seqs = tx.begun
        ? await tx.finish(async (db) => {
            const q = (await claimWithCheckpoint(db, [claim], { owner: this.#owner, seconds: this.#leaseSeconds })).get(
              writeKey(jobId, token),
            );
            return { value: q, rollback: q === undefined };
          })
        : await this.#claims.submit(claim);
      if (seqs === undefined) {
        release();
        return {};
      }
      this.#metrics.checkpoint.observe({ type: type.name }, (performance.now() - t0) / 1000);
      this.#metrics.steps.inc({ type: type.name, outcome: 'start' });
      this.#events.publish(jobId, ...seqs);
      return {
        row: { ...row, total, checkpoint_cursor: cursor, checkpoint_state: s.state, checkpoint_at: new Date() },
        type,
        log,
      };
    } catch (err) {
      // The claim's statements failed (e.g. a lost connection): the locked claim tries again.
      release();
      if (!isConnectionError(err)) log.warn({ err }, 'claim with start failed; claiming with a lock');
      return {};
    } finally {
      await tx.rollback();
    }
  }

  /**
   * Claims the job for this execution, or settles the execution when it has nothing to run. A claim
   * takes a slot of the job's type, given back if the claim does not commit.
   */
  async claim(
    j: JobWithMetadata<ExecutionData>,
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
          // Its worker was lost, and pg-boss retried this execution before a monitor took the job over:
          // settled as the monitor would (a lost lease, not a failed attempt), and a new execution carries on.
          const settled = await settleAttempt(c, this.#boss, {
            row,
            token: null,
            attempt,
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
            attempt,
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
          executionRetry: attempt.retryCount,
        });
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
      // The previous holder's lease is still live (a retry came before it ran out): wait it out.
      if (Date.now() > deadline || this.#stopping()) {
        await failExecution(this.#boss, this.#pool, attempt, { message: 'the job was still leased by another worker' });
        return undefined;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  }
}
