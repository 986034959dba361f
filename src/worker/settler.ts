/**
 * How an execution ends, each through the store's fenced statements: the job completes (last checkpoint,
 * result and COMPLETED in one transaction, group-committed across jobs), is cancelled, hands over to a
 * follow-up execution, or its attempt is settled as failed (retried or dead-lettered). Its pg-boss
 * execution is gone by then (the claim consumed it): only what runs the job next goes through pg-boss.
 * A statement whose fence refuses means the lease was lost: the job is abandoned, never written.
 */
import type { PgBoss } from 'pg-boss';
import { createPool, withTransaction, type Pool, type Queryable } from '../db/pool.ts';
import type { JobEventsPublisher } from '../jobs/events-publisher.ts';
import type { Logger } from '../observability/logger.ts';
import { DEFAULT_BACKOFF, isPermanentError, type AnyJobType, type Json } from '../../packages/sdk/src/index.ts';
import { sendExecution } from './executions.ts';
import { GroupCommit } from './group-commit.ts';
import { JobStopped, type StopReason } from './job-stopped.ts';
import type { LazyTransaction } from './lazy-transaction.ts';
import type { WorkerMetrics } from './metrics.ts';
import {
  cancelIfRunning,
  completeAllQuery,
  completedSeqs,
  completeWithCheckpoint,
  COMPLETE_REFUSED,
  failOnTimeLimit,
  GROUP_MAX,
  refusalReason,
  releaseLease,
  returnToPendingIfRunning,
  writeKey,
  type ClaimRow,
  type CompleteWithCheckpoint,
  type EventPair,
} from '../jobs/lifecycle.ts';
import { settleAttempt } from './attempts.ts';

/** A job whose type is at its concurrency limit in this process is handed back for this long. */
export const TYPE_BUSY_DELAY_SECONDS = 1;

/**
 * Connections of the group commits' pool: the completions and the checkpoints each run one batch at a
 * time, and one spare for a broken one.
 */
const COMMIT_POOL_MAX = 3;

/**
 * The settings of the group commits' connections (the completions here, the checkpoints through
 * groupCommits()). Their statements find their jobs by id, and Postgres keeps a generic plan of each
 * after a few runs: one made while the jobs table was small read it whole, and went on reading it whole
 * at every completion once a backlog came (the fairness bench showed it). As on the fetch's connection
 * (src/worker/fetcher.ts FETCH_SESSION), no plan reads a table whole where it has an index.
 */
export const COMMIT_SESSION = { enable_seqscan: 'off' } as const;

export class Settler {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #events: JobEventsPublisher;
  readonly #metrics: WorkerMetrics;
  readonly #maxLeaseLosses: number;
  /**
   * Group commit of the completions whose last step needs no transaction of its own (it wrote nothing
   * through ctx.db): the jobs that complete while a batch is in flight share one statement.
   */
  readonly #completions: GroupCommit<CompleteWithCheckpoint, EventPair | undefined>;
  /** Connections of the group commits (opened by open()). */
  #commits: Pool | undefined;

  constructor(deps: {
    pool: Pool;
    boss: PgBoss;
    events: JobEventsPublisher;
    metrics: WorkerMetrics;
    /** Takeovers after a lost lease before the job is dead-lettered. */
    maxLeaseLosses: number;
  }) {
    this.#pool = deps.pool;
    this.#boss = deps.boss;
    this.#events = deps.events;
    this.#metrics = deps.metrics;
    this.#maxLeaseLosses = deps.maxLeaseLosses;
    this.#completions = new GroupCommit(async (jobs) => {
      const seqs = (await this.#completeAll(jobs)) ?? (await completeWithCheckpoint(this.#pool, jobs));
      return jobs.map((j) => seqs.get(writeKey(j.jobId, j.token)));
    }, GROUP_MAX);
  }

  /** Opens the group commits' connections. */
  open(databaseUrl: string): void {
    this.#commits = createPool(databaseUrl, COMMIT_POOL_MAX, 'longhaul-worker-commit', COMMIT_SESSION);
  }

  /** Where group commits run: the connections with COMMIT_SESSION once open(), else the service's pool. */
  groupCommits(): Queryable {
    return this.#commits ?? this.#pool;
  }

  async close(): Promise<void> {
    await this.#commits?.end().catch(() => undefined);
    this.#commits = undefined;
  }

  /**
   * The last chunk's checkpoint, the result and COMPLETED: one statement, group-committed with other
   * jobs' completions when the step wrote nothing through ctx.db, else in the step's transaction.
   */
  async complete(
    tx: LazyTransaction,
    row: ClaimRow,
    token: string,
    r: { cursor: Json; state: Json; processed: number; total?: number | null },
    result: Json,
  ): Promise<void> {
    const done: CompleteWithCheckpoint = {
      jobId: row.id,
      token,
      cursor: r.cursor,
      state: r.state,
      processed: r.processed,
      total: r.total,
      result,
    };
    let seqs: EventPair | undefined;
    if (tx.begun) {
      const client = await tx.client();
      seqs = await tx.finish(async () => {
        const q = (await completeWithCheckpoint(client, [done])).get(writeKey(row.id, token));
        return q === undefined ? { value: undefined, rollback: true } : { value: q };
      });
    } else {
      await tx.rollback();
      seqs = await this.#completions.submit(done);
    }
    if (seqs === undefined) throw new JobStopped(await refusalReason(this.#pool, row.id, token));
    this.#events.publish(row.id, ...seqs);
    this.#metrics.executions.inc({ outcome: 'completed' });
  }

  /**
   * Completions of jobs whose last step wrote nothing, in one statement (completeAllQuery) that
   * completes every job or fails and changes nothing; undefined then (and before open()), and the
   * caller completes those its fence allows.
   */
  async #completeAll(jobs: CompleteWithCheckpoint[]): Promise<Map<string, EventPair> | undefined> {
    const commits = this.#commits;
    if (commits === undefined) return undefined;
    try {
      const { rows } = await commits.query(completeAllQuery(jobs));
      return completedSeqs(rows);
    } catch (err) {
      if ((err as { code?: unknown }).code === COMPLETE_REFUSED) return undefined;
      throw err;
    }
  }

  /**
   * Ends this execution at a chunk boundary and sends the next one, which continues from the checkpoint
   * (`type-busy`: a job claimed before it started, whose type has no free slot here after all).
   */
  async handOver(
    row: ClaimRow,
    type: Pick<AnyJobType, 'backoff'>,
    token: string,
    why: 'budget' | 'shutdown' | 'type-busy',
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
        priority: row.priority,
        ...(why === 'type-busy' ? { delaySeconds: TYPE_BUSY_DELAY_SECONDS } : {}),
      });
      if (!(await releaseLease(c, { jobId: row.id, token, execution: next }))) throw new JobStopped('lease-lost');
      // At shutdown (or with no slot) the job waits for a worker; at the end of a budget it carries on at once.
      if (why !== 'budget') await returnToPendingIfRunning(c, row.id, { announce: true });
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
  async onStop(
    err: unknown,
    signal: AbortSignal,
    s: { row: ClaimRow; type: AnyJobType; token: string; log: Logger },
  ): Promise<void> {
    const { row, type, token, log } = s;
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
      await this.handOver(row, type, token, 'shutdown', log);
      return;
    }
    if (reason === 'timeout') {
      const failed = await withTransaction(this.#pool, (c) =>
        failOnTimeLimit(c, { row, token, limit: 'timeout', announce: false }),
      );
      if (failed === undefined) this.#leaseLost(row.id, log);
      else {
        if (failed.seq !== undefined) this.#events.publish(row.id, failed.seq);
        this.#metrics.executions.inc({ outcome: 'failed' });
        log.warn('job failed: it ran past its timeout_seconds');
      }
      return;
    }
    if (reason === 'cancelled') {
      const ok = await withTransaction(this.#pool, async (c) => {
        if (!(await releaseLease(c, { jobId: row.id, token }))) return false;
        const moved = await cancelIfRunning(c, row.id, { announce: false });
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
        kind: 'failure',
        error: { message: e.message, name: e.name, permanent },
        final: permanent,
        maxLeaseLosses: this.#maxLeaseLosses,
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
