/**
 * The worker runtime. It fetches executions from pg-boss as slots free up (woken at once by pg-boss's
 * LISTEN/NOTIFY, polling as a fallback), claims each job under a fresh lease token, and runs its type's
 * `start`, `chunk`… and `finish`, committing a fenced checkpoint after every step. An execution ends
 * when the job ends (COMPLETED, FAILED, CANCELLED), fails (pg-boss retries it with backoff or
 * dead-letters it), or hands over to a follow-up execution at the end of its time budget or at shutdown.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobWithMetadata, PgBoss } from 'pg-boss';
import client from 'prom-client';
import type { PgListener } from '../db/listener.ts';
import {
  createPipelinePool,
  isConnectionError,
  pipelinedTransaction,
  withTransaction,
  type Pool,
  type Queryable,
} from '../db/pool.ts';
import { JobEventsPublisher } from '../jobs/events-publisher.ts';
import { QUEUES } from '../jobs/queues.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { CANCEL_CHANNEL, transition } from '../jobs/repository.ts';
import { isTerminal } from '../jobs/state.ts';
import type { Logger } from '../observability/logger.ts';
import type { Registry } from '../observability/metrics.ts';
import {
  completeExecution,
  completeExecutions,
  completeExecutionsQuery,
  failExecution,
  sendExecution,
  type ExecutionAttempt,
  type ExecutionData,
} from './executions.ts';
import { LazyTransaction } from './lazy-transaction.ts';
import {
  DEFAULT_BACKOFF,
  DEFAULT_CHUNK_SIZE,
  isPermanentError,
  type AnyJobType,
  type ChunkResult,
  type Json,
  type JobContext,
  type JobTypeDefinition,
} from '../../packages/sdk/src/index.ts';
import {
  claimWithCheckpoint,
  completeAllQuery,
  completedSeqs,
  completeWithCheckpoint,
  COMPLETE_REFUSED,
  leaseLostError,
  lockJob,
  peekJobs,
  refusalReason,
  releaseLease,
  renewLease,
  setExecution,
  settleAttempt,
  takeLease,
  writeCheckpoint,
  writeKey,
  checkpointGroup,
  GROUP_MAX,
  type CheckpointWrite,
  type ClaimRow,
  type ClaimWithCheckpoint,
  type CompleteWithCheckpoint,
  type EventPair,
} from './store.ts';
import { GroupCommit } from './group-commit.ts';

export interface WorkerOptions {
  /** Jobs run at once by this process. (Default: LONGHAUL_WORKER_CONCURRENCY, 8) */
  concurrency: number;
  /** Jobs of one tenant running at once across all workers (pg-boss group concurrency). (Default: 4) */
  tenantConcurrency: number;
  /** Lease length; a job whose lease runs out is taken over by another worker. (Default: 30) */
  leaseSeconds: number;
  /** Longest one execution runs before handing over to a follow-up execution. (Default: 900) */
  executionBudgetSeconds: number;
  /** How long stop() lets running steps finish before aborting them. (Default: 30) */
  shutdownTimeoutSeconds: number;
  /** Takeovers after a lost lease before the job is dead-lettered. (Default: LONGHAUL_MAX_LEASE_LOSSES, 10) */
  maxLeaseLosses: number;
}

/** Fallback polling when no notification arrives (retries after backoff are not notified). */
const POLL_INTERVAL_MS = 500;
/** A job whose type is at its concurrency limit in this process is handed back for this long. */
const TYPE_BUSY_DELAY_SECONDS = 1;
/** Connections of the pipelining pool (group commits run one batch at a time; one spare for a broken one). */
const PIPELINE_POOL_MAX = 2;
/** What stop() keeps for the last commits after it aborts steps that did not finish in time. */
const SHUTDOWN_MARGIN_MS = 2000;
/**
 * Checkpoints of one job not yet committed (they commit one after another) while its next chunk runs.
 * Two: a chunk whose input is already read (a report reads ahead) can take less time than a
 * checkpoint's fdatasync and commit on a busy machine; one more in flight keeps the job from waiting,
 * and a failed commit still redoes only the chunks after the last committed one.
 */
const CHECKPOINTS_IN_FLIGHT = 2;

type StopReason = 'cancelled' | 'lease-lost' | 'shutdown';

/** Why a running job's signal fired. */
export class JobStopped extends Error {
  override name = 'JobStopped';
  readonly reason: StopReason;
  constructor(reason: StopReason) {
    super(`job stopped: ${reason}`);
    this.reason = reason;
  }
}

interface Running {
  jobId: string;
  type: string;
  controller: AbortController;
  done: Promise<void>;
}

/**
 * The channel pg-boss 12 announces new jobs of notify-enabled queues on (its notifyChannelSql), as a SQL
 * expression; the worker LISTENs on it to wake at once. test/pgboss-drift.test.ts checks it against the
 * statement pg-boss's insert() runs, so an upgrade that renames the channel fails a test, not pickup.
 */
export const BOSS_CHANNEL_SQL = `'pgboss_' || left(encode(sha224('pgboss'::bytea), 'hex'), 24)`;

export class WorkerRuntime {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #registry: JobTypeRegistry;
  readonly #log: Logger;
  readonly #listener: PgListener;
  readonly #opts: WorkerOptions;
  readonly #owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  readonly #running = new Map<string, Running>();
  readonly #typeCounts = new Map<string, number>();
  /** Announces the events this worker commits, after each commit (never inside the transaction). */
  readonly #events: JobEventsPublisher;
  /**
   * Group commits of the steps that need no transaction of their own (start() or the last chunk wrote
   * nothing through ctx.db): the jobs that reach one while a batch is in flight share one statement.
   */
  readonly #peeks: GroupCommit<string, ClaimRow | undefined>;
  readonly #checkpoints: GroupCommit<CheckpointWrite, number | undefined>;
  readonly #claims: GroupCommit<ClaimWithCheckpoint, EventPair | undefined>;
  readonly #completions: GroupCommit<CompleteWithCheckpoint & { attempt: ExecutionAttempt }, EventPair | undefined>;
  /** Pipelining connections for the group-committed completions (opened by start()). */
  #pipeline: Pool | undefined;
  #stopping = false;
  #draining = false;
  #wake: (() => void) | undefined;
  #rang = false;
  #loop: Promise<void> | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  readonly #metrics: {
    steps: client.Counter<'type' | 'outcome'>;
    checkpoint: client.Histogram<'type'>;
    checkpointWait: client.Counter<'type'>;
    executions: client.Counter<'outcome'>;
    leaseLost: client.Counter;
  };

  constructor(deps: {
    pool: Pool;
    boss: PgBoss;
    registry: JobTypeRegistry;
    log: Logger;
    /** The process's LISTEN connection (src/db/listener.ts). */
    listener: PgListener;
    metrics: Registry;
    options: WorkerOptions;
  }) {
    this.#pool = deps.pool;
    this.#boss = deps.boss;
    this.#registry = deps.registry;
    this.#log = deps.log.child({ component: 'worker' });
    this.#listener = deps.listener;
    this.#opts = deps.options;
    this.#events = new JobEventsPublisher(this.#pool, this.#log);
    this.#peeks = new GroupCommit(async (ids) => {
      const rows = await peekJobs(this.#pool, ids);
      return ids.map((id) => rows.get(id));
    }, GROUP_MAX);
    this.#checkpoints = checkpointGroup(this.#pool);
    this.#claims = new GroupCommit(async (claims) => {
      const seqs = await claimWithCheckpoint(this.#pool, claims, {
        owner: this.#owner,
        seconds: this.#opts.leaseSeconds,
      });
      return claims.map((c) => seqs.get(writeKey(c.jobId, c.token)));
    }, GROUP_MAX);
    this.#completions = new GroupCommit(async (jobs) => {
      const seqs =
        (await this.#completeAllPipelined(jobs)) ??
        (await withTransaction(this.#pool, async (c) => {
          const completed = await completeWithCheckpoint(c, jobs);
          const done = jobs.filter((j) => completed.has(writeKey(j.jobId, j.token)));
          if (done.length > 0)
            await completeExecutions(
              this.#boss,
              c,
              done.map((j) => j.attempt),
            );
          return completed;
        }));
      return jobs.map((j) => seqs.get(writeKey(j.jobId, j.token)));
    }, GROUP_MAX);
    const r = deps.metrics;
    this.#metrics = {
      steps: new client.Counter({
        name: 'longhaul_job_steps_total',
        help: 'Job steps (start, chunks, finish) run',
        labelNames: ['type', 'outcome'],
        registers: [r],
      }),
      checkpoint: new client.Histogram({
        name: 'longhaul_checkpoint_seconds',
        help: 'Time to commit one checkpoint (the step transaction)',
        labelNames: ['type'],
        buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
        registers: [r],
      }),
      checkpointWait: new client.Counter({
        name: 'longhaul_checkpoint_wait_seconds_total',
        help: "Time jobs waited, their next chunk done, for the last chunk's checkpoint (durable writes and commit); what checkpoints add to a job's run time",
        labelNames: ['type'],
        registers: [r],
      }),
      executions: new client.Counter({
        name: 'longhaul_executions_total',
        help: 'Executions ended, by outcome',
        labelNames: ['outcome'],
        registers: [r],
      }),
      leaseLost: new client.Counter({
        name: 'longhaul_lease_lost_total',
        help: 'Executions that found their lease taken and abandoned the job',
        registers: [r],
      }),
    };
  }

  /** Identifies this worker in `lease_owner`. */
  get owner(): string {
    return this.#owner;
  }

  async start(databaseUrl: string): Promise<void> {
    const { rows } = await this.#pool.query<{ ch: string }>(`SELECT ${BOSS_CHANNEL_SQL} AS ch`);
    this.#pipeline = createPipelinePool(databaseUrl, PIPELINE_POOL_MAX, 'longhaul-worker-commit');
    this.#unsubscribe = await this.#listener.subscribe([rows[0]?.ch ?? '', CANCEL_CHANNEL], {
      onNotification: (channel, payload) => {
        if (channel === CANCEL_CHANNEL) this.#running.get(payload)?.controller.abort(new JobStopped('cancelled'));
        else this.#ring();
      },
      // Jobs sent while the connection was down were not announced: fetch now.
      onConnect: () => this.#ring(),
    });
    this.#loop = this.#fetchLoop();
  }

  /** Stops fetching; running jobs stop at their next chunk boundary with their checkpoint committed and hand over. */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#loop;
    this.#stopping = true;
    this.#draining = true;
    this.#ring();
    await this.#loop;
    const all = Promise.all([...this.#running.values()].map((r) => r.done));
    const budget = Math.max(0, this.#opts.shutdownTimeoutSeconds * 1000 - SHUTDOWN_MARGIN_MS);
    const timer = setTimeout(() => {
      for (const r of this.#running.values()) r.controller.abort(new JobStopped('shutdown'));
    }, budget);
    await all;
    clearTimeout(timer);
    await this.#unsubscribe?.();
    await this.#events.flush();
    await this.#pipeline?.end().catch(() => undefined);
    this.#pipeline = undefined;
  }

  // ---- fetching ------------------------------------------------------------------------------

  #ring(): void {
    this.#rang = true;
    this.#wake?.();
  }

  async #waitForWake(ms: number): Promise<void> {
    if (this.#rang) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  async #fetchLoop(): Promise<void> {
    while (!this.#stopping) {
      this.#rang = false;
      const free = this.#opts.concurrency - this.#running.size;
      if (free > 0) {
        let jobs: Array<JobWithMetadata<ExecutionData>> = [];
        try {
          jobs = await this.#boss.fetch<ExecutionData>(QUEUES.jobs, {
            batchSize: free,
            includeMetadata: true,
            groupConcurrency: this.#opts.tenantConcurrency,
          });
        } catch (err) {
          // An outage is logged once, by the listener; fetching resumes when the database answers.
          if (!isConnectionError(err)) this.#log.error({ err }, 'fetching executions failed');
        }
        for (const j of jobs) this.#launch(j);
        // A full batch means there is likely more: fetch again once a slot frees (or now, if one is free).
        if (jobs.length > 0 && jobs.length === free) continue;
      }
      await this.#waitForWake(POLL_INTERVAL_MS);
    }
  }

  #launch(j: JobWithMetadata<ExecutionData>): void {
    const controller = new AbortController();
    const entry: Running = { jobId: j.data.jobId, type: '', controller, done: Promise.resolve() };
    // Keyed by execution until the claim names the job (an execution of a job already running here is refused at claim).
    const key = `exec:${j.id}`;
    this.#running.set(key, entry);
    entry.done = this.#execute(j, controller, entry, key)
      .catch((err: unknown) => {
        // Cut off by an outage: the job's lease runs out and the monitor hands it to a new execution.
        if (isConnectionError(err))
          this.#log.debug({ err, job_id: j.data.jobId, execution: j.id }, 'execution interrupted by a database outage');
        else this.#log.error({ err, job_id: j.data.jobId, execution: j.id }, 'execution failed unexpectedly');
      })
      .finally(() => {
        this.#running.delete(key);
        if (this.#running.get(entry.jobId) === entry) this.#running.delete(entry.jobId);
        if (entry.type !== '') this.#typeCounts.set(entry.type, (this.#typeCounts.get(entry.type) ?? 1) - 1);
        this.#ring();
      });
  }

  // ---- one execution -------------------------------------------------------------------------

  async #execute(
    j: JobWithMetadata<ExecutionData>,
    controller: AbortController,
    entry: Running,
    key: string,
  ): Promise<void> {
    const attempt: ExecutionAttempt = { id: j.id, retryCount: j.retryCount, retryLimit: j.retryLimit };
    const jobId = j.data.jobId;
    const token = randomUUID();
    const lease = this.#opts.leaseSeconds;
    let leased = false;
    // A child logger is not free (redaction setup): the job's is made when first needed.
    let log: Logger | undefined;
    const jobLog = (): Logger => (log ??= this.#log.child({ job_id: jobId }));
    const heartbeat = setInterval(
      () => {
        if (leased) {
          renewLease(this.#pool, jobId, token, lease).then(
            (r) => {
              if (r === undefined) controller.abort(new JobStopped('lease-lost'));
              else if (r.cancelRequested) controller.abort(new JobStopped('cancelled'));
            },
            (err: unknown) => isConnectionError(err) || jobLog().warn({ err }, 'lease renewal failed'),
          );
        }
        this.#boss
          .touch(QUEUES.jobs, { id: attempt.id, retryCount: attempt.retryCount })
          .catch((err: unknown) => isConnectionError(err) || jobLog().warn({ err }, 'pg-boss heartbeat failed'));
      },
      (lease * 1000) / 3,
    );
    try {
      const started = await this.#claimWithStart(j, attempt, token, controller.signal);
      const claimed = 'row' in started ? started : await this.#claim(j, attempt, token);
      if (claimed === undefined) return;
      leased = true;
      const { row, type } = claimed;
      this.#running.delete(key);
      this.#running.set(jobId, entry);
      entry.type = type.name;
      // The claim (either kind) reserved the type's slot; #launch gives it back when the execution ends.
      const stepLog =
        'log' in claimed ? claimed.log : this.#log.child({ job_id: jobId, type: type.name, attempt: row.attempts });
      log = stepLog;
      try {
        if (row.cancel_requested) throw new JobStopped('cancelled');
        // start() already ran for this attempt and threw: that is the attempt's outcome.
        if ('error' in started && row.checkpoint_at === null) throw started.error;
        await this.#run(row, type, token, attempt, controller.signal, stepLog);
      } catch (err) {
        await this.#onStop(err, controller.signal, { row, type, token, attempt, log: stepLog });
      }
    } finally {
      clearInterval(heartbeat);
    }
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
  async #claimWithStart(
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
      seen.cancel_requested
    )
      return {};
    const type = this.#registry.get(seen.type);
    if (type === undefined || (this.#typeCounts.get(type.name) ?? 0) >= (type.concurrency ?? this.#opts.concurrency))
      return {};
    this.#typeCounts.set(type.name, (this.#typeCounts.get(type.name) ?? 0) + 1);
    const release = () => this.#typeCounts.set(type.name, (this.#typeCounts.get(type.name) ?? 1) - 1);
    const attempts = j.data.cont === true && attempt.retryCount === 0 ? Math.max(1, seen.attempts) : seen.attempts + 1;
    const row: ClaimRow = { ...seen, attempts, status: 'RUNNING' };
    const log = this.#log.child({ job_id: jobId, type: type.name, attempt: attempts });
    const def = type as JobTypeDefinition<unknown, Json, Json>;
    const tx = new LazyTransaction(this.#pool);
    try {
      let s: Awaited<ReturnType<typeof def.start>>;
      try {
        s = await def.start(this.#context(row, type, signal, log, tx.db));
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
            const q = (
              await claimWithCheckpoint(db, [claim], { owner: this.#owner, seconds: this.#opts.leaseSeconds })
            ).get(writeKey(jobId, token));
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
   * reserves a slot of the job's type (checked and taken with no await between, as executions of the
   * same type claim at the same time), given back if the claim does not commit.
   */
  async #claim(
    j: JobWithMetadata<ExecutionData>,
    attempt: ExecutionAttempt,
    token: string,
  ): Promise<{ row: ClaimRow; type: AnyJobType } | undefined> {
    const jobId = j.data.jobId;
    const deadline = Date.now() + (this.#opts.leaseSeconds + 5) * 1000;
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
            maxLeaseLosses: this.#opts.maxLeaseLosses,
            backoff: type?.backoff ?? DEFAULT_BACKOFF,
            announce: false,
          });
          settledSeq = settled?.seq;
          return settled?.outcome === 'dead' ? ('dead' as const) : ('skip' as const);
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
            maxLeaseLosses: this.#opts.maxLeaseLosses,
            backoff: DEFAULT_BACKOFF,
            announce: false,
          });
          settledSeq = settled?.seq;
          return settled?.outcome === 'dead' ? ('dead' as const) : ('skip' as const);
        }
        const limit = type.concurrency ?? this.#opts.concurrency;
        if ((this.#typeCounts.get(type.name) ?? 0) >= limit) {
          // This process runs as many of this type as allowed: hand the job to a later execution (any worker).
          const next = await sendExecution(this.#boss, c, {
            jobId,
            tenantId: row.tenant_id,
            retriesLeft: attempt.retryLimit - attempt.retryCount,
            attemptsUsed: row.attempts,
            backoff: type.backoff ?? DEFAULT_BACKOFF,
            delaySeconds: TYPE_BUSY_DELAY_SECONDS,
            continuation: j.data.cont === true && attempt.retryCount === 0,
          });
          await setExecution(c, jobId, next);
          await completeExecution(this.#boss, c, attempt, { handedOver: next, reason: 'type concurrency' });
          return 'skip' as const;
        }
        this.#typeCounts.set(type.name, (this.#typeCounts.get(type.name) ?? 0) + 1);
        reserved = type.name;
        // A continuation carries on the same attempt; a first execution or a retry is a new attempt.
        const attempts =
          j.data.cont === true && attempt.retryCount === 0 ? Math.max(1, row.attempts) : row.attempts + 1;
        await takeLease(c, {
          jobId,
          token,
          owner: this.#owner,
          leaseSeconds: this.#opts.leaseSeconds,
          attempts,
          execution: attempt.id,
          executionRetry: attempt.retryCount,
        });
        const moved = row.status === 'PENDING' ? await transition(c, jobId, 'RUNNING', { announce: false }) : undefined;
        return { row: { ...row, attempts, status: 'RUNNING' as const }, type, seq: moved?.event_seq };
      }).catch((err: unknown) => {
        // The claim did not commit: its slot is not taken.
        if (reserved !== undefined) this.#typeCounts.set(reserved, (this.#typeCounts.get(reserved) ?? 1) - 1);
        reserved = undefined;
        throw err;
      });
      if (settledSeq !== undefined) this.#events.publish(jobId, settledSeq);
      if (out === 'skip') return undefined;
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
      if (Date.now() > deadline || this.#stopping) {
        await failExecution(this.#boss, this.#pool, attempt, { message: 'the job was still leased by another worker' });
        return undefined;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  }

  #context(row: ClaimRow, type: AnyJobType, signal: AbortSignal, log: Logger, db: Queryable): JobContext<unknown> {
    return {
      job: {
        id: row.id,
        tenantId: row.tenant_id,
        type: type.name,
        input: row.input,
        metadata: row.metadata,
        attempt: row.attempts,
      },
      log,
      signal,
      db,
    };
  }

  async #run(
    row: ClaimRow,
    type: AnyJobType,
    token: string,
    attempt: ExecutionAttempt,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const lease = this.#opts.leaseSeconds;
    const budgetEnds = Date.now() + this.#opts.executionBudgetSeconds * 1000;
    const chunkSize = type.chunkSize ?? DEFAULT_CHUNK_SIZE;
    // The registry holds every type whatever its generics; here states and results are plain JSON.
    const def = type as JobTypeDefinition<unknown, Json, Json>;
    let cursor: Json = row.checkpoint_cursor;
    let state: Json = row.checkpoint_state;
    const commit = async (
      tx: LazyTransaction,
      write: { cursor: Json; state: Json; processed: number; total?: number | null },
    ) => {
      const t0 = performance.now();
      const w: CheckpointWrite = { jobId: row.id, token, leaseSeconds: lease, ...write };
      let seq: number | undefined;
      if (tx.begun) {
        seq = await tx.finish(async (db) => {
          const s = await writeCheckpoint(db, w);
          return { value: s, rollback: s === undefined };
        });
      } else {
        await tx.rollback();
        seq = await this.#checkpoints.submit(w);
      }
      if (seq === undefined) throw new JobStopped(await refusalReason(this.#pool, row.id, token));
      this.#metrics.checkpoint.observe({ type: type.name }, (performance.now() - t0) / 1000);
      this.#events.publish(row.id, seq);
    };

    if (row.checkpoint_at === null) {
      const tx = new LazyTransaction(this.#pool);
      try {
        const s = await def.start(this.#context(row, type, signal, log, tx.db));
        signal.throwIfAborted();
        cursor = s.cursor ?? null;
        state = s.state;
        await commit(tx, { cursor, state, processed: 0, total: s.total ?? null });
      } finally {
        await tx.rollback();
      }
      this.#metrics.steps.inc({ type: type.name, outcome: 'start' });
    }
    // A chunk's checkpoint commits while the next chunks run (its latency, a WAL flush and the chunk's
    // durable writes, is off the job's path), in order, at most CHECKPOINTS_IN_FLIGHT at once. A step's
    // own transaction begins, and the job finishes or hands over, only once all before it committed. If
    // one fails, the chunk running meanwhile is aborted and its result dropped.
    const committing: Array<Promise<void>> = [];
    /** Waits until at most `keep` checkpoints are still committing; throws the first one's failure. */
    const settle = async (keep: number): Promise<void> => {
      if (committing.length <= keep) return;
      const t0 = performance.now();
      try {
        while (committing.length > keep) await committing.shift();
      } finally {
        this.#metrics.checkpointWait.inc({ type: type.name }, (performance.now() - t0) / 1000);
      }
    };
    /** Stops once the signal has fired, after the checkpoints committing (a failed one's error wins). */
    const stopIfAborted = async (): Promise<void> => {
      if (!signal.aborted) return;
      await settle(0);
      signal.throwIfAborted();
    };
    for (;;) {
      await stopIfAborted();
      if (this.#draining || Date.now() >= budgetEnds) {
        await settle(0);
        await this.#handOver(row, type, token, attempt, this.#draining ? 'shutdown' : 'budget', log);
        return;
      }
      const before = committing.at(-1);
      const tx = new LazyTransaction(this.#pool, before);
      // The chunk's signal: the execution's, and the failure of a checkpoint committing meanwhile.
      const step = new AbortController();
      const forward = () => step.abort(signal.reason);
      signal.addEventListener('abort', forward, { once: true });
      before?.catch((err: unknown) => step.abort(err));
      let handed = false;
      try {
        const ctx = this.#context(row, type, step.signal, log, tx.db);
        let r: ChunkResult<Json>;
        try {
          r = await def.chunk({ ...ctx, chunkSize }, cursor, state);
        } catch (err) {
          // A failed checkpoint, if any, is what stopped this chunk: its error is the one thrown.
          await settle(0);
          throw err;
        }
        // Awaited below (before finish, or by the checkpoint); until then a failure must not count as unhandled.
        r.durable?.catch(() => undefined);
        await stopIfAborted();
        if (r.done) {
          await settle(0);
          await r.durable;
          const result = await def.finish(ctx, r.state);
          signal.throwIfAborted();
          await this.#complete(tx, row, token, attempt, r, result);
          this.#metrics.steps.inc({ type: type.name, outcome: 'finish' });
          log.info('job completed');
          return;
        }
        await settle(CHECKPOINTS_IN_FLIGHT - 1);
        const { durable } = r;
        const write = { cursor: r.cursor, state: r.state, processed: r.processed };
        const previous = committing.at(-1);
        const pending = (async () => {
          await durable;
          await previous;
          await commit(tx, write);
        })().finally(() => tx.rollback());
        // Awaited by settle(); until then a failure must not count as unhandled.
        pending.catch(() => undefined);
        committing.push(pending);
        handed = true;
        cursor = r.cursor;
        state = r.state;
        this.#metrics.steps.inc({ type: type.name, outcome: 'chunk' });
      } finally {
        signal.removeEventListener('abort', forward);
        if (!handed) await tx.rollback();
      }
    }
  }

  /**
   * The last chunk's checkpoint, the result, COMPLETED and the execution's completion: one transaction,
   * group-committed with other jobs' completions when the step wrote nothing through ctx.db.
   */
  async #complete(
    tx: LazyTransaction,
    row: ClaimRow,
    token: string,
    attempt: ExecutionAttempt,
    r: { cursor: Json; state: Json; processed: number },
    result: Json,
  ): Promise<void> {
    const done: CompleteWithCheckpoint = {
      jobId: row.id,
      token,
      cursor: r.cursor,
      state: r.state,
      processed: r.processed,
      result,
    };
    let seqs: EventPair | undefined;
    if (tx.begun) {
      const client = await tx.client();
      seqs = await tx.finish(async () => {
        const q = (await completeWithCheckpoint(client, [done])).get(writeKey(row.id, token));
        if (q === undefined) return { value: undefined, rollback: true };
        await completeExecution(this.#boss, client, attempt);
        return { value: q };
      });
    } else {
      await tx.rollback();
      seqs = await this.#completions.submit({ ...done, attempt });
    }
    if (seqs === undefined) throw new JobStopped(await refusalReason(this.#pool, row.id, token));
    this.#events.publish(row.id, ...seqs);
    this.#metrics.executions.inc({ outcome: 'completed' });
  }

  /**
   * Completions of jobs whose last step wrote nothing, in one round trip: BEGIN, completeAllQuery,
   * pg-boss's complete of their executions and COMMIT, pipelined. pg-boss's statement is sent before
   * ours answers, so ours applies to every job or fails and rolls all back; undefined then (and before
   * start()), and the caller completes them job by job, each as its fence allows.
   */
  async #completeAllPipelined(
    jobs: Array<CompleteWithCheckpoint & { attempt: ExecutionAttempt }>,
  ): Promise<Map<string, EventPair> | undefined> {
    const pipeline = this.#pipeline;
    if (pipeline === undefined) return undefined;
    const boss = await completeExecutionsQuery(
      this.#boss,
      jobs.map((j) => j.attempt),
    );
    if (boss === undefined) return undefined;
    try {
      const [rows] = await pipelinedTransaction(pipeline, [completeAllQuery(jobs), boss]);
      return completedSeqs(rows ?? []);
    } catch (err) {
      if ((err as { code?: unknown }).code === COMPLETE_REFUSED) return undefined;
      throw err;
    }
  }

  /** Ends this execution at a chunk boundary and sends the next one, which continues from the checkpoint. */
  async #handOver(
    row: ClaimRow,
    type: AnyJobType,
    token: string,
    attempt: ExecutionAttempt,
    why: 'budget' | 'shutdown',
    log: Logger,
  ): Promise<void> {
    const ok = await withTransaction(this.#pool, async (c) => {
      const next = await sendExecution(this.#boss, c, {
        jobId: row.id,
        tenantId: row.tenant_id,
        retriesLeft: row.max_attempts - row.attempts,
        attemptsUsed: row.attempts,
        backoff: type.backoff ?? DEFAULT_BACKOFF,
        continuation: true,
      });
      if (!(await releaseLease(c, { jobId: row.id, token, execution: next }))) throw new JobStopped('lease-lost');
      // At shutdown the job waits for a worker; at the end of a budget it carries on at once.
      if (why === 'shutdown') await transition(c, row.id, 'PENDING');
      await completeExecution(this.#boss, c, attempt, { handedOver: next, reason: why });
      return true;
    }).catch((err: unknown) => {
      if (err instanceof JobStopped) return false;
      throw err;
    });
    if (!ok) {
      this.#leaseLost(row.id, log);
      return;
    }
    this.#metrics.executions.inc({ outcome: `handover-${why}` });
    log.info({ reason: why }, 'execution handed over to a follow-up execution');
  }

  #leaseLost(jobId: string, log: Logger): void {
    this.#metrics.leaseLost.inc();
    this.#metrics.executions.inc({ outcome: 'lease-lost' });
    log.warn({ job_id: jobId }, 'lease lost; abandoning job (another worker owns it now)');
  }

  /** After a step threw or the signal fired: cancel, hand over, abandon, retry or fail for good. */
  async #onStop(
    err: unknown,
    signal: AbortSignal,
    s: { row: ClaimRow; type: AnyJobType; token: string; attempt: ExecutionAttempt; log: Logger },
  ): Promise<void> {
    const { row, type, token, attempt, log } = s;
    const reason: StopReason | undefined =
      err instanceof JobStopped
        ? err.reason
        : signal.aborted && signal.reason instanceof JobStopped
          ? signal.reason.reason
          : undefined;
    if (reason === 'lease-lost') {
      this.#leaseLost(row.id, log);
      return;
    }
    if (reason === 'shutdown') {
      await this.#handOver(row, type, token, attempt, 'shutdown', log);
      return;
    }
    if (reason === 'cancelled') {
      const ok = await withTransaction(this.#pool, async (c) => {
        if (!(await releaseLease(c, { jobId: row.id, token }))) return false;
        const moved = await transition(c, row.id, 'CANCELLED', { announce: false });
        await completeExecution(this.#boss, c, attempt, { cancelled: true });
        return { seq: moved?.event_seq };
      });
      if (ok === false) this.#leaseLost(row.id, log);
      else {
        if (ok.seq !== undefined) this.#events.publish(row.id, ok.seq);
        this.#metrics.executions.inc({ outcome: 'cancelled' });
        log.info('job cancelled');
      }
      return;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    const permanent = isPermanentError(err);
    const settled = await withTransaction(this.#pool, (c) =>
      settleAttempt(c, this.#boss, {
        row,
        token,
        attempt,
        kind: 'failure',
        error: { message: e.message, name: e.name, permanent },
        final: permanent,
        maxLeaseLosses: this.#opts.maxLeaseLosses,
        backoff: type.backoff ?? DEFAULT_BACKOFF,
        announce: false,
      }),
    );
    if (settled === undefined) {
      this.#leaseLost(row.id, log);
      return;
    }
    if (settled.seq !== undefined) this.#events.publish(row.id, settled.seq);
    const last = settled.outcome === 'dead';
    this.#metrics.executions.inc({ outcome: last ? 'failed' : 'retry' });
    if (last)
      log.error(
        { err: e, permanent },
        permanent ? 'job failed permanently' : 'job failed; attempts exhausted, dead-lettered',
      );
    else log.warn({ err: e }, 'job attempt failed; will retry');
  }
}
