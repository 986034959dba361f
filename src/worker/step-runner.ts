/**
 * Running a claimed job's steps: start() if the job has no checkpoint yet, then chunk() after chunk()
 * and finish(). start()'s checkpoint commits at once only if start() wrote through ctx.db (its writes
 * commit with it); else it rides with the first chunk's checkpoint, or the completion. Each chunk's fenced checkpoint commits while the next chunks run, in order, at most
 * CHECKPOINTS_IN_FLIGHT at once; a step's own transaction begins, and the job finishes or hands over,
 * only once every checkpoint before it committed. A checkpoint the fence refuses stops the job with
 * JobStopped; how the execution then ends is the settler's.
 */
import type { Pool, Queryable } from '../db/pool.ts';
import type { JobEventsPublisher } from '../jobs/events-publisher.ts';
import type { Logger } from '../observability/logger.ts';
import { completionSpan, countOnExecution } from '../observability/tracing.ts';
import {
  DEFAULT_CHUNK_SIZE,
  type AnyJobType,
  type ChunkResult,
  type Json,
  type JobContext,
  type JobTypeDefinition,
} from '../../packages/sdk/src/index.ts';
import type { GroupCommit } from './group-commit.ts';
import { JobStopped } from './job-stopped.ts';
import { LazyTransaction } from './lazy-transaction.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { Settler } from './settler.ts';
import { refusalReason, writeCheckpoint, type CheckpointWrite, type ClaimRow } from '../jobs/lifecycle.ts';

/**
 * Checkpoints of one job not yet committed (they commit one after another) while its next chunk runs.
 * Two: a chunk whose input is already read (a report reads ahead) can take less time than a
 * checkpoint's fdatasync and commit on a busy machine; one more in flight keeps the job from waiting,
 * and a failed commit still redoes only the chunks after the last committed one.
 */
const CHECKPOINTS_IN_FLIGHT = 2;

/** What a job type's step sees of its job. */
export function jobContext(
  row: ClaimRow,
  type: AnyJobType,
  signal: AbortSignal,
  log: Logger,
  db: Queryable,
): JobContext<unknown> {
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

export class StepRunner {
  readonly #pool: Pool;
  readonly #checkpoints: GroupCommit<CheckpointWrite, number | undefined>;
  readonly #events: JobEventsPublisher;
  readonly #metrics: WorkerMetrics;
  readonly #settler: Settler;
  readonly #leaseSeconds: number;
  readonly #executionBudgetSeconds: number;
  readonly #draining: () => boolean;

  constructor(deps: {
    pool: Pool;
    /** Group commit of the checkpoints whose step wrote nothing through ctx.db. */
    checkpoints: GroupCommit<CheckpointWrite, number | undefined>;
    events: JobEventsPublisher;
    metrics: WorkerMetrics;
    settler: Settler;
    leaseSeconds: number;
    /** Longest one execution runs before handing over to a follow-up execution. */
    executionBudgetSeconds: number;
    /** True once the runtime drains: the job hands over at its next chunk boundary. */
    draining: () => boolean;
  }) {
    this.#pool = deps.pool;
    this.#checkpoints = deps.checkpoints;
    this.#events = deps.events;
    this.#metrics = deps.metrics;
    this.#settler = deps.settler;
    this.#leaseSeconds = deps.leaseSeconds;
    this.#executionBudgetSeconds = deps.executionBudgetSeconds;
    this.#draining = deps.draining;
  }

  /**
   * Runs the job's steps to its completion or hand-over. `finished` is called once its type's code has
   * returned the result, before the completion commits: the runtime frees the job's slot then.
   */
  async run(
    row: ClaimRow,
    type: AnyJobType,
    token: string,
    signal: AbortSignal,
    log: Logger,
    finished: () => void,
  ): Promise<void> {
    const lease = this.#leaseSeconds;
    const budgetEnds = Date.now() + this.#executionBudgetSeconds * 1000;
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
      countOnExecution('checkpoint', (performance.now() - t0) / 1000);
      this.#events.publish(row.id, seq);
    };

    /** start()'s total while start()'s checkpoint waits for the first chunk's. */
    let started: { total: number | null } | undefined;
    if (row.checkpoint_at === null) {
      const tx = new LazyTransaction(this.#pool);
      try {
        const s = await def.start(jobContext(row, type, signal, log, tx.db));
        signal.throwIfAborted();
        cursor = s.cursor ?? null;
        state = s.state;
        const total = s.total ?? null;
        // Until the first chunk's checkpoint commits, the job has none: a crash or hand-over before then
        // runs start() again in the next execution, as it always did for a crash before start's commit.
        if (tx.begun) await commit(tx, { cursor, state, processed: 0, total });
        else started = { total };
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
      if (this.#draining() || Date.now() >= budgetEnds) {
        await settle(0);
        await this.#settler.handOver(row, type, token, this.#draining() ? 'shutdown' : 'budget', log);
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
        const ctx = jobContext(row, type, step.signal, log, tx.db);
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
        countOnExecution('chunk');
        await stopIfAborted();
        if (r.done) {
          await settle(0);
          await r.durable;
          const result = await def.finish(ctx, r.state);
          signal.throwIfAborted();
          finished();
          const last = { ...r, ...started };
          await completionSpan(() => this.#settler.complete(tx, row, token, last, result));
          this.#metrics.steps.inc({ type: type.name, outcome: 'finish' });
          log.info('job completed');
          return;
        }
        await settle(CHECKPOINTS_IN_FLIGHT - 1);
        const { durable } = r;
        const write = { cursor: r.cursor, state: r.state, processed: r.processed, ...started };
        started = undefined;
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
}
