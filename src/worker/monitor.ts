/**
 * The worker's monitor, run by every worker process: it takes over jobs whose lease ran out (their
 * worker died, hung or lost the network), and raises alerts for running jobs that stopped making
 * progress and for jobs waiting too long for a worker. Rows are locked SKIP LOCKED and alerts are
 * arbitrated by the alerts table, so several monitors never double-handle anything.
 */
import type { PgBoss } from 'pg-boss';
import { withTransaction, type Pool } from '../db/pool.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { transition } from '../jobs/repository.ts';
import type { Alerts } from '../observability/alerts.ts';
import type { Logger } from '../observability/logger.ts';
import { Periodic } from '../periodic.ts';
import { completeExecution } from './executions.ts';
import { DEFAULT_BACKOFF, DEFAULT_STALL_AFTER_SECONDS } from '../../packages/sdk/src/index.ts';
import { leaseLostError, lockExpiredLeases, releaseLease, settleAttempt } from './store.ts';

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

export class WorkerMonitor extends Periodic {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #registry: JobTypeRegistry;
  readonly #alerts: Alerts;
  readonly #log: Logger;
  readonly #opts: MonitorOptions;

  constructor(deps: {
    pool: Pool;
    boss: PgBoss;
    registry: JobTypeRegistry;
    alerts: Alerts;
    log: Logger;
    options: MonitorOptions;
  }) {
    const log = deps.log.child({ component: 'monitor' });
    super(log);
    this.#pool = deps.pool;
    this.#boss = deps.boss;
    this.#registry = deps.registry;
    this.#alerts = deps.alerts;
    this.#log = log;
    this.#opts = deps.options;
    const sweepMs = Math.min(this.#opts.intervalSeconds, this.#opts.leaseSeconds / 2) * 1000;
    this.every('monitor sweep', sweepMs, () => this.sweepExpiredLeases());
    this.every('monitor alerts', this.#opts.intervalSeconds * 1000, () => this.checkAlerts());
  }

  /**
   * Takes over jobs whose lease expired. A lost worker is not a failure of the job: the attempt carries
   * on from its checkpoint in a new execution (the lost one is completed), without spending one of the
   * job's attempts; only after maxLeaseLosses takeovers is the job dead-lettered (settleAttempt).
   * Returns how many jobs were taken over.
   */
  async sweepExpiredLeases(): Promise<number> {
    return withTransaction(this.#pool, async (c) => {
      const rows = await lockExpiredLeases(c, SWEEP_BATCH);
      for (const row of rows) {
        const attempt = { id: row.execution, retryCount: row.execution_retry ?? 0 };
        if (row.cancel_requested) {
          await releaseLease(c, { jobId: row.id, token: row.lease_token });
          await transition(c, row.id, 'CANCELLED');
          await completeExecution(this.#boss, c, attempt, { cancelled: true });
          continue;
        }
        const settled = await settleAttempt(c, this.#boss, {
          row,
          token: row.lease_token,
          attempt,
          kind: 'lease_lost',
          error: leaseLostError(row.lease_owner),
          maxLeaseLosses: this.#opts.maxLeaseLosses,
          backoff: this.#registry.get(row.type)?.backoff ?? DEFAULT_BACKOFF,
          announce: true,
        });
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

  /** Raises and clears the stalled-job and pending-too-long alerts. */
  async checkAlerts(): Promise<void> {
    const types = this.#registry.all();
    const { rows: stalled } = await this.#pool.query<{
      id: string;
      type: string;
      tenant_id: string;
      idle: number;
      processed: number;
    }>(
      `SELECT j.id, j.type, j.tenant_id, extract(epoch FROM now() - j.updated_at)::float8 AS idle, j.processed
         FROM jobs j JOIN unnest($1::text[], $2::float8[]) AS t(type, secs) ON t.type = j.type
        WHERE j.status = 'RUNNING' AND j.lease_expires_at > now() AND j.updated_at < now() - make_interval(secs => t.secs)`,
      [types.map((t) => t.name), types.map((t) => t.stallAfterSeconds ?? DEFAULT_STALL_AFTER_SECONDS)],
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

    const { rows } = await this.#pool.query<{ n: number; oldest: string | null; waited: number | null }>(
      `SELECT count(*)::int AS n, (array_agg(id ORDER BY updated_at))[1]::text AS oldest,
              max(extract(epoch FROM now() - updated_at))::float8 AS waited
         FROM jobs WHERE status = 'PENDING' AND updated_at < now() - make_interval(secs => $1)`,
      [this.#opts.pendingAlertSeconds],
    );
    const p = rows[0];
    if (p !== undefined && p.n > 0) {
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
