/**
 * Keeps a running execution alive: every third of the lease it touches the execution's pg-boss job
 * until the claim takes the job's lease (a locked claim may wait out another worker's), then renews
 * that lease (the claim consumed the execution). A renewal that finds the lease taken or the job's
 * cancel requested fires the execution's signal with the reason.
 */
import type { PgBoss } from 'pg-boss';
import { isConnectionError, type Pool } from '../db/pool.ts';
import { QUEUES } from '../jobs/queues.ts';
import type { Logger } from '../observability/logger.ts';
import type { ExecutionAttempt } from './executions.ts';
import { JobStopped } from './job-stopped.ts';
import { renewLease } from '../jobs/lifecycle.ts';

export class Heartbeat {
  readonly #timer: ReturnType<typeof setInterval>;
  #leased = false;

  constructor(h: {
    pool: Pool;
    boss: PgBoss;
    jobId: string;
    token: string;
    attempt: ExecutionAttempt;
    leaseSeconds: number;
    controller: AbortController;
    /** The job's logger, made when first needed. */
    log: () => Logger;
  }) {
    const { pool, boss, jobId, token, attempt, leaseSeconds: lease, controller, log } = h;
    this.#timer = setInterval(
      () => {
        if (this.#leased) {
          renewLease(pool, jobId, token, lease).then(
            (r) => {
              if (r === undefined) controller.abort(new JobStopped('lease-lost'));
              else if (r.cancelRequested) controller.abort(new JobStopped('cancelled'));
            },
            (err: unknown) => isConnectionError(err) || log().warn({ err }, 'lease renewal failed'),
          );
        } else
          boss
            .touch(QUEUES.jobs, { id: attempt.id, retryCount: attempt.retryCount })
            .catch((err: unknown) => isConnectionError(err) || log().warn({ err }, 'pg-boss heartbeat failed'));
      },
      (lease * 1000) / 3,
    );
  }

  /** The claim took the job's lease: renew it from now on. */
  leased(): void {
    this.#leased = true;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
