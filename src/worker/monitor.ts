/**
 * The worker's monitor, run by every worker process: it takes over jobs whose lease ran out (their
 * worker died, hung or lost the network), and raises alerts for running jobs that stopped making
 * progress, for jobs waiting too long for a worker and for each job dead-lettered. Rows are locked SKIP LOCKED and alerts are
 * arbitrated by the alerts table, so several monitors never double-handle anything.
 */
import type { PgBoss } from 'pg-boss';
import { withTransaction, type Pool } from '../db/pool.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { deadLetteredAfter, longPending, stalledJobs, stillDeadLettered } from '../jobs/repository.ts';
import type { Alerts } from '../alerts/alerts.ts';
import type { Logger } from '../observability/logger.ts';
import { registeredOnce, type Registry } from '../observability/metrics.ts';
import client from 'prom-client';
import { Periodic } from '../periodic.ts';
import { DEFAULT_BACKOFF, DEFAULT_STALL_AFTER_SECONDS } from '../../packages/sdk/src/index.ts';
import {
  cancelIfRunning,
  failOnTimeLimit,
  lockExpiredLeases,
  lockTimeLimitedJobs,
  releaseLease,
} from '../jobs/lifecycle.ts';
import { leaseLostError, settleAttempt } from './attempts.ts';

export interface MonitorOptions {
  /** Seconds between monitor passes. (Default: LONGHAUL_MONITOR_INTERVAL_SECONDS, 10) */
  intervalSeconds: number;
  /** Lease length: expired leases are swept at least twice per lease. (Default: 30) */
  leaseSeconds: number;
  /** Alert when a PENDING job has waited this long. (Default: 300) */
  pendingAlertSeconds: number;
  /** Takeovers after a lost lease before the job is dead-lettered. (Default: LONGHAUL_MAX_LEASE_LOSSES, 10) */
  maxLeaseLosses: number;
}

/** Expired leases handled per sweep transaction. */
const SWEEP_BATCH = 50;
export const STALLED_KIND = 'job-stalled';
export const PENDING_KIND = 'jobs-pending';
export const DEAD_KIND = 'job-dead';

/** On its first pass the dead-letter alert looks back this far: jobs dead-lettered while no monitor ran. */
const DEAD_LOOKBACK_SECONDS = 24 * 3600;
/**
 * Each pass re-reads this far behind the newest dead-lettering it saw: a transaction that dead-letters
 * a job stamps it with its start time and may commit after a later one was read.
 */
const DEAD_REWIND_SECONDS = 60;
/** Dead-lettered jobs read per statement, and statements per pass; the rest waits for the next pass. */
const DEAD_PAGE = 200;
const DEAD_PAGES_PER_PASS = 10;

export class WorkerMonitor extends Periodic {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #registry: JobTypeRegistry;
  readonly #alerts: Alerts;
  readonly #log: Logger;
  readonly #opts: MonitorOptions;
  readonly #takeovers: client.Counter<'outcome'> | undefined;
  /** Newest dead-lettering the alert pass has seen, and the jobs it saw within the rewind behind it. */
  #deadMark: { at: string; id: string } | undefined;
  readonly #deadSeen = new Map<string, string>();

  constructor(deps: {
    pool: Pool;
    boss: PgBoss;
    registry: JobTypeRegistry;
    alerts: Alerts;
    log: Logger;
    options: MonitorOptions;
    metrics?: Registry | undefined;
  }) {
    const log = deps.log.child({ component: 'monitor' });
    super(log);
    this.#pool = deps.pool;
    this.#boss = deps.boss;
    this.#registry = deps.registry;
    this.#alerts = deps.alerts;
    this.#log = log;
    this.#opts = deps.options;
    const r = deps.metrics;
    this.#takeovers =
      r &&
      registeredOnce(
        r,
        'longhaul_lease_takeovers_total',
        () =>
          new client.Counter({
            name: 'longhaul_lease_takeovers_total',
            help: 'Jobs whose lease expired, taken over by a monitor: continued (from the checkpoint), dead (lost their worker too often), cancelled',
            labelNames: ['outcome'] as const,
            registers: [r],
          }),
      );
    const sweepMs = Math.min(this.#opts.intervalSeconds, this.#opts.leaseSeconds / 2) * 1000;
    this.every('monitor sweep', sweepMs, () => this.sweepExpiredLeases());
    this.every('monitor time limits', sweepMs, () => this.sweepTimeLimits());
    this.every('monitor alerts', this.#opts.intervalSeconds * 1000, () => this.checkAlerts());
  }

  /**
   * Takes over jobs whose lease expired. A lost worker is not a failure of the job: the attempt carries
   * on from its checkpoint in a new execution (the claim consumed the lost one), without spending one of the
   * job's attempts; only after maxLeaseLosses takeovers is the job dead-lettered (settleAttempt).
   * Returns how many jobs were taken over.
   */
  async sweepExpiredLeases(): Promise<number> {
    return withTransaction(this.#pool, async (c) => {
      const rows = await lockExpiredLeases(c, SWEEP_BATCH);
      for (const row of rows) {
        if (row.cancel_requested) {
          await releaseLease(c, { jobId: row.id, token: row.lease_token });
          await cancelIfRunning(c, row.id, { announce: true });
          this.#takeovers?.inc({ outcome: 'cancelled' });
          continue;
        }
        const settled = await settleAttempt(c, this.#boss, {
          row,
          token: row.lease_token,
          kind: 'lease_lost',
          error: leaseLostError(row.lease_owner),
          maxLeaseLosses: this.#opts.maxLeaseLosses,
          backoff: this.#registry.get(row.type)?.backoff ?? DEFAULT_BACKOFF,
          announce: true,
        });
        if (settled !== undefined) this.#takeovers?.inc({ outcome: settled.outcome === 'dead' ? 'dead' : 'continued' });
        this.#log.warn(
          {
            job_id: row.id,
            owner: row.lease_owner,
            attempt: row.attempts,
            lease_losses: settled?.entry.lease_losses,
            dead_lettered: settled?.outcome === 'dead',
          },
          settled?.outcome === 'dead'
            ? 'took over a job whose lease expired: it lost its worker too often; dead-lettered'
            : 'took over a job whose lease expired',
        );
      }
      return rows.length;
    });
  }

  /**
   * Fails PENDING jobs past a time limit (never started by their expires_at, or waiting for a retry past
   * their timeout), so they show FAILED when due rather than when a worker reaches them. Their waiting
   * execution then finds the job finished and completes without running it. Returns how many failed.
   */
  async sweepTimeLimits(): Promise<number> {
    return withTransaction(this.#pool, async (c) => {
      const rows = await lockTimeLimitedJobs(c, SWEEP_BATCH);
      for (const row of rows) await failOnTimeLimit(c, { row, token: null, limit: row.time_limit, announce: true });
      if (rows.length > 0) this.#log.info({ jobs: rows.length }, 'failed jobs past their time limit');
      return rows.length;
    });
  }

  /** Raises and clears the stalled-job, pending-too-long and dead-lettered-job alerts. */
  async checkAlerts(): Promise<void> {
    await this.#checkStalledAndPending();
    await this.checkDeadLetters();
  }

  /**
   * Raises one alert per job newly dead-lettered (by any worker or monitor), and clears the alerts of
   * jobs since replayed or deleted. The alerts table makes each raise happen once across processes.
   */
  async checkDeadLetters(): Promise<void> {
    let after = this.#deadMark;
    let rewind = after === undefined ? DEAD_LOOKBACK_SECONDS : DEAD_REWIND_SECONDS;
    for (let page = 0; page < DEAD_PAGES_PER_PASS; page++) {
      const rows = await deadLetteredAfter(this.#pool, after, rewind, DEAD_PAGE);
      for (const job of rows) {
        if (this.#deadSeen.get(job.id) !== job.at_key) {
          await this.#alerts.raise(`${DEAD_KIND}:${job.id}`, {
            kind: DEAD_KIND,
            message: `job ${job.id} (${job.type}) was dead-lettered after ${job.attempts} attempt(s)`,
            details: {
              job_id: job.id,
              type: job.type,
              tenant_id: job.tenant_id,
              attempts: job.attempts,
              error: job.error,
            },
          });
          this.#deadSeen.set(job.id, job.at_key);
        }
        after = { at: job.at_key, id: job.id };
        if (this.#deadMark === undefined || after.at > this.#deadMark.at) this.#deadMark = after;
      }
      if (rows.length < DEAD_PAGE) break;
      rewind = 0;
    }
    const mark = this.#deadMark;
    if (mark !== undefined) {
      const horizon = new Date(Date.parse(mark.at) - DEAD_REWIND_SECONDS * 1000 - 1000).toISOString();
      for (const [id, at] of this.#deadSeen) if (at < horizon) this.#deadSeen.delete(id);
    }
    const active = (await this.#alerts.active(DEAD_KIND)).map((a) => ({ key: a.key, jobId: a.details.job_id }));
    if (active.length === 0) return;
    const still = await stillDeadLettered(
      this.#pool,
      active.flatMap((a) => (typeof a.jobId === 'string' ? [a.jobId] : [])),
    );
    for (const a of active) if (typeof a.jobId !== 'string' || !still.has(a.jobId)) await this.#alerts.clear(a.key);
  }

  async #checkStalledAndPending(): Promise<void> {
    const types = this.#registry.all();
    const stalled = await stalledJobs(
      this.#pool,
      types.map((t) => ({ type: t.name, seconds: t.stallAfterSeconds ?? DEFAULT_STALL_AFTER_SECONDS })),
    );
    for (const s of stalled) {
      await this.#alerts.raise(`${STALLED_KIND}:${s.id}`, {
        kind: STALLED_KIND,
        message: `job ${s.id} (${s.type}) is running but has not checkpointed for ${Math.round(s.idle)} s`,
        details: {
          job_id: s.id,
          type: s.type,
          tenant_id: s.tenant_id,
          idle_seconds: Math.round(s.idle),
          processed: s.processed,
        },
      });
    }
    await this.#alerts.clearAllExcept(
      STALLED_KIND,
      stalled.map((s) => `${STALLED_KIND}:${s.id}`),
    );

    const p = await longPending(this.#pool, this.#opts.pendingAlertSeconds);
    if (p.n > 0) {
      await this.#alerts.raise(PENDING_KIND, {
        kind: PENDING_KIND,
        message: `${p.n} job(s) have waited more than ${this.#opts.pendingAlertSeconds} s for a worker`,
        details: { count: p.n, oldest_job_id: p.oldest, waited_seconds: Math.round(p.waited ?? 0) },
      });
    } else {
      await this.#alerts.clear(PENDING_KIND);
    }
  }
}
