/**
 * The worker runtime: it wires the rooms of one execution's life and holds the runtime's state. The
 * fetcher (fetcher.ts) hands it executions as slots free up; each execution is claimed under a fresh
 * lease token (claimer.ts), runs its type's `start`, `chunk`… and `finish` with a fenced checkpoint
 * after every step (step-runner.ts), and ends through the settler (settler.ts): the job ends (COMPLETED,
 * FAILED, CANCELLED), the attempt fails (a retry is sent to start after the backoff, or a dead
 * letter), or the execution hands over to a follow-up execution at the end of its time budget or at
 * shutdown.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { PgBoss } from 'pg-boss';
import type { PgListener } from '../db/listener.ts';
import { isConnectionError, type Pool } from '../db/pool.ts';
import { JobEventsPublisher } from '../jobs/events-publisher.ts';
import { QUEUES } from '../jobs/queues.ts';
import type { FetchedClaim } from '../jobs/lifecycle.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import type { Logger } from '../observability/logger.ts';
import type { Registry } from '../observability/metrics.ts';
import { startExecution } from '../observability/tracing.ts';
import { Claimer } from './claimer.ts';
import type { ExecutionAttempt } from './executions.ts';
import { queueTable, type FetchedExecution } from './fair-fetch.ts';
import { Fetcher } from './fetcher.ts';
import { Heartbeat } from './heartbeat.ts';
import { JobStopped } from './job-stopped.ts';
import { workerMetrics } from './metrics.ts';
import { Settler } from './settler.ts';
import { StepRunner } from './step-runner.ts';
import { checkpointGroup } from './checkpoint-group.ts';
import { TypeSlots } from './type-slots.ts';
import type { AnyJobType } from '../../packages/sdk/src/index.ts';

export interface WorkerOptions {
  /** Jobs run at once by this process. (Default: LONGHAUL_WORKER_CONCURRENCY, 8) */
  concurrency: number;
  /**
   * Jobs this process may start beyond `concurrency` while every slot is taken, each for a tenant with
   * no job running anywhere (fair-share.ts burstLimits). (Default: LONGHAUL_WORKER_BURST_SLOTS, 1)
   */
  burstSlots: number;
  /**
   * A hard limit on one tenant's running jobs across all workers, for tenants without a running limit
   * of their own; undefined (the default): none, tenants share the slots fairly (fair-share.ts).
   */
  tenantConcurrency: number | undefined;
  /** Lease length; a job whose lease runs out is taken over by another worker. (Default: 30) */
  leaseSeconds: number;
  /** Longest one execution runs before handing over to a follow-up execution. (Default: 900) */
  executionBudgetSeconds: number;
  /** How long stop() lets running steps finish before aborting them. (Default: 30) */
  shutdownTimeoutSeconds: number;
  /** Takeovers after a lost lease before the job is dead-lettered. (Default: LONGHAUL_MAX_LEASE_LOSSES, 10) */
  maxLeaseLosses: number;
}

/** What stop() keeps for the last commits after it aborts steps that did not finish in time. */
const SHUTDOWN_MARGIN_MS = 2000;

/**
 * `draining`: stop() was called; nothing more is fetched or waited for, and running jobs hand over at
 * their next chunk boundary. `stopped`: every execution has ended and the connections are closed.
 */
type RuntimeState = 'created' | 'starting' | 'running' | 'draining' | 'stopped';

interface Running {
  jobId: string;
  /** The job's type once claimed (its slot then taken), '' before. */
  type: string;
  /** Its tenant, and when its claim had committed (performance.now()), once claimed. */
  claimed?: { tenant: string; at: number };
  controller: AbortController;
  done: Promise<void>;
  /** Its type's code has returned and its completion is committing: its slot is free (#settle). */
  settling?: boolean;
}

/**
 * Slots free in a process of `concurrency` slots holding `running` jobs, `settling` of them with their
 * code returned and their completion committing: those count as free up to `concurrency`, so a process
 * holds at most twice its slots in jobs, however long completions take.
 */
export function freeSlots(concurrency: number, running: number, settling: number): number {
  return concurrency - running + Math.min(settling, concurrency);
}

/** Longest delay setTimeout keeps (a longer one fires at once); a later deadline is set by a later execution. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkerRuntime {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #log: Logger;
  readonly #opts: WorkerOptions;
  readonly #owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  #state: RuntimeState = 'created';
  /** Executions running here, keyed by execution until the claim names the job, then by job. */
  readonly #running = new Map<string, Running>();
  /** Of #running, those settling. */
  #settling = 0;
  readonly #slots: TypeSlots;
  /** Announces the events this worker commits, after each commit (never inside the transaction). */
  readonly #events: JobEventsPublisher;
  readonly #fetcher: Fetcher;
  readonly #claimer: Claimer;
  readonly #steps: StepRunner;
  readonly #settler: Settler;
  readonly #registry: JobTypeRegistry;

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
    const opts = deps.options;
    this.#pool = deps.pool;
    this.#boss = deps.boss;
    this.#log = deps.log.child({ component: 'worker' });
    this.#opts = opts;
    this.#registry = deps.registry;
    this.#events = new JobEventsPublisher(this.#pool, this.#log, { listener: deps.listener });
    // A type without a limit of its own runs in any of the process's slots, burst slots included.
    this.#slots = new TypeSlots(opts.concurrency + opts.burstSlots);
    const metrics = workerMetrics(deps.metrics);
    const draining = () => this.#state === 'draining' || this.#state === 'stopped';
    const common = { pool: this.#pool, boss: this.#boss, events: this.#events, metrics };
    this.#fetcher = new Fetcher({
      pool: this.#pool,
      listener: deps.listener,
      log: this.#log,
      tenantLimit: opts.tenantConcurrency,
      concurrency: opts.concurrency,
      burstSlots: opts.burstSlots,
      leaseSeconds: opts.leaseSeconds,
      free: () => freeSlots(opts.concurrency, this.#running.size, this.#settling),
      launch: (j) => this.#launch(j),
      owner: this.#owner,
      rooms: () => this.#slots.rooms(deps.registry.all()),
      onCancel: (jobId) => this.#running.get(jobId)?.controller.abort(new JobStopped('cancelled')),
      stopping: draining,
    });
    this.#claimer = new Claimer({
      ...common,
      registry: deps.registry,
      log: this.#log,
      slots: this.#slots,
      owner: this.#owner,
      leaseSeconds: opts.leaseSeconds,
      maxLeaseLosses: opts.maxLeaseLosses,
      stopping: draining,
    });
    this.#settler = new Settler({ ...common, maxLeaseLosses: opts.maxLeaseLosses });
    this.#steps = new StepRunner({
      ...common,
      checkpoints: checkpointGroup(() => this.#settler.groupCommits()),
      settler: this.#settler,
      leaseSeconds: opts.leaseSeconds,
      executionBudgetSeconds: opts.executionBudgetSeconds,
      draining,
    });
  }

  /** Identifies this worker in `lease_owner`. */
  get owner(): string {
    return this.#owner;
  }

  async start(databaseUrl: string): Promise<void> {
    this.#state = 'starting';
    // The executions' job table: the fetch reads it, a claim deletes the execution it consumes.
    const table = await queueTable(this.#boss, QUEUES.jobs);
    this.#claimer.open(table);
    this.#settler.open(databaseUrl);
    await this.#events.start();
    await this.#fetcher.start(databaseUrl, table).catch(async (err: unknown) => {
      await this.#fetcher.unsubscribe();
      await this.#events.stop();
      await this.#settler.close();
      throw err;
    });
    if (this.#state === 'starting') this.#state = 'running';
  }

  /** Stops fetching; running jobs stop at their next chunk boundary with their checkpoint committed and hand over. */
  async stop(): Promise<void> {
    if (this.#state === 'draining' || this.#state === 'stopped') return this.#fetcher.stopped();
    this.#state = 'draining';
    await this.#fetcher.stopped();
    const all = Promise.all([...this.#running.values()].map((r) => r.done));
    const budget = Math.max(0, this.#opts.shutdownTimeoutSeconds * 1000 - SHUTDOWN_MARGIN_MS);
    const timer = setTimeout(() => {
      for (const r of this.#running.values()) r.controller.abort(new JobStopped('shutdown'));
    }, budget);
    await all;
    clearTimeout(timer);
    await this.#fetcher.unsubscribe();
    await this.#events.flush();
    await this.#events.stop();
    await this.#settler.close();
    this.#state = 'stopped';
  }

  #launch(j: FetchedExecution): void {
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
        if (entry.settling === true) this.#settling--;
        else if (entry.type !== '') this.#slots.release(entry.type);
        this.#fetcher.jobEnded(entry.claimed);
      });
  }

  /** One execution: claim, run the steps, settle; kept alive by its heartbeat throughout. */
  async #execute(j: FetchedExecution, controller: AbortController, entry: Running, key: string): Promise<void> {
    const attempt: ExecutionAttempt = { id: j.id, retryCount: j.retryCount, retryLimit: j.retryLimit };
    const jobId = j.data.jobId;
    // A job the fetch claimed holds the lease its statement took; the locked claim takes a fresh one.
    const token = j.claim?.token ?? randomUUID();
    // A child logger is not free (redaction setup): the job's is made when first needed.
    let log: Logger | undefined;
    const heartbeat = new Heartbeat({
      pool: this.#pool,
      boss: this.#boss,
      jobId,
      token,
      attempt,
      leaseSeconds: this.#opts.leaseSeconds,
      controller,
      log: () => (log ??= this.#log.child({ job_id: jobId })),
    });
    let deadline: ReturnType<typeof setTimeout> | undefined;
    try {
      const claimed = j.claim === null ? await this.#claimer.claim(j, attempt, token) : await this.#fetched(j.claim);
      if (claimed === undefined) return;
      heartbeat.leased();
      const { row, type } = claimed;
      entry.claimed = { tenant: row.tenant_id, at: performance.now() };
      // Past the job's timeout its signal fires: a chunk still running is aborted, and the steps stop at its boundary.
      const left = row.deadline === null ? undefined : row.deadline.getTime() - Date.now();
      if (left !== undefined && left <= MAX_TIMER_MS)
        deadline = setTimeout(() => controller.abort(new JobStopped('timeout')), Math.max(0, left));
      this.#running.delete(key);
      this.#running.set(jobId, entry);
      entry.type = type.name;
      // The claim (either kind) took the type's slot; #launch gives it back when the execution ends.
      const stepLog = this.#log.child({ job_id: jobId, type: type.name, attempt: row.attempts });
      log = stepLog;
      const trace = startExecution(row, {
        id: jobId,
        type: type.name,
        attempt: row.attempts,
        first: j.claim !== null && row.attempts === 1,
      });
      try {
        if (row.cancel_requested) throw new JobStopped('cancelled');
        const finished = () => this.#settle(entry);
        await trace.run(() => this.#steps.run(row, type, token, controller.signal, stepLog, finished));
        trace.end();
      } catch (err) {
        trace.end(err);
        await this.#settler.onStop(err, controller.signal, { row, type, token, log: stepLog });
      }
    } finally {
      heartbeat.stop();
      clearTimeout(deadline);
    }
  }

  /**
   * The job's code has returned its result: its slot (the process's, within freeSlots, and its type's)
   * frees while the completion commits, so that the next fetch runs beside the completions' group
   * commit rather than after it.
   */
  #settle(entry: Running): void {
    entry.settling = true;
    this.#settling++;
    this.#slots.release(entry.type);
    this.#fetcher.wake();
  }

  /**
   * A job the fetch claimed: its RUNNING event announced and its type's slot taken here. The fetch
   * counted the free slots before it ran; should a locked claim have taken the last one meanwhile, the
   * job is handed back, as the locked claim hands back a job of a type at its limit.
   */
  async #fetched(claim: FetchedClaim): Promise<{ row: FetchedClaim; type: AnyJobType } | undefined> {
    this.#events.publish(claim.id, claim.seq);
    const type = this.#registry.get(claim.type);
    if (type !== undefined && this.#slots.tryTake(type)) return { row: claim, type };
    const log = this.#log.child({ job_id: claim.id, type: claim.type });
    await this.#settler.handOver(claim, type ?? {}, claim.token, 'type-busy', log);
    return undefined;
  }
}
