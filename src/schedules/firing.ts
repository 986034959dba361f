/**
 * The firing service: every interval, in every worker process, it claims the schedules whose next
 * occurrence has come (FOR UPDATE SKIP LOCKED, so each is taken by one process) and, in the same
 * transaction, creates the occurrence's job and moves the schedule on to its next occurrence. The job
 * carries the Idempotency-Key `schedule:<id>:<occurrence>`, so even a schedule set back to an instant it
 * already fired (or a firing retried after a lost commit) cannot create a second job for it.
 *
 * Missed occurrences (the service was down, or every process was busy): only the latest occurrence that
 * has come is fired, once; the ones before it are skipped. With `overlap: "skip"`, an occurrence whose
 * schedule's last job is still PENDING or RUNNING creates nothing (recorded as `skipped`).
 */
import { DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS } from '../../packages/sdk/src/index.ts';
import { withTransaction, type Pool } from '../db/pool.ts';
import { fingerprint } from '../jobs/idempotency.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import type { JobSubmitter } from '../jobs/submit.ts';
import type { Logger } from '../observability/logger.ts';
import { Periodic } from '../periodic.ts';
import { latestOccurrence, nextOccurrence } from './cron.ts';
import { claimDue, recordFiring, type DueSchedule } from './store.ts';

/** Schedules fired per transaction; a longer list is worked through in several. */
const CLAIM_BATCH = 50;

export class ScheduleFiring {
  readonly #pool: Pool;
  readonly #submitter: JobSubmitter;
  readonly #registry: JobTypeRegistry;
  readonly #log: Logger;
  readonly #periodic: Periodic;

  constructor(deps: {
    pool: Pool;
    submitter: JobSubmitter;
    registry: JobTypeRegistry;
    log: Logger;
    intervalMs: number;
  }) {
    this.#pool = deps.pool;
    this.#submitter = deps.submitter;
    this.#registry = deps.registry;
    this.#log = deps.log.child({ component: 'schedules' });
    this.#periodic = new Periodic(this.#log).every('firing schedules', deps.intervalMs, () => this.fireDue());
  }

  start(): void {
    this.#periodic.start();
  }

  stop(): Promise<void> {
    return this.#periodic.stop();
  }

  /** Fires every occurrence that has come; returns how many schedules it handled. */
  async fireDue(): Promise<number> {
    let handled = 0;
    for (;;) {
      const n = await withTransaction(this.#pool, async (client) => {
        const due = await claimDue(client, CLAIM_BATCH);
        for (const s of due) await this.#fire(client, s);
        return due.length;
      });
      handled += n;
      if (n < CLAIM_BATCH) return handled;
    }
  }

  async #fire(client: Parameters<JobSubmitter['insertIn']>[0], s: DueSchedule): Promise<void> {
    let fireAt: Date;
    let next: Date;
    try {
      fireAt = latestOccurrence(s.cron, s.timezone, s.id, s.now) ?? s.next_fire_at ?? s.now;
      next = nextOccurrence(s.cron, s.timezone, s.id, s.now);
    } catch (err) {
      // Accepted when it was written, refused now (e.g. a time zone dropped from the runtime's data): stop
      // firing it rather than fail every pass, and say so.
      this.#log.error({ err, schedule_id: s.id }, 'schedule no longer computes; it fires no more until changed');
      await recordFiring(client, s.id, { fireAt: s.now, next: null, outcome: 'skipped', jobId: null });
      return;
    }
    if (s.overlap === 'skip' && s.last_job_active) {
      await recordFiring(client, s.id, { fireAt, next, outcome: 'skipped', jobId: null });
      this.#log.info({ schedule_id: s.id, fire_at: fireAt }, 'occurrence skipped: the last job is unfinished');
      return;
    }
    const type = this.#registry.get(s.job.type);
    const key = `schedule:${s.id}:${fireAt.toISOString()}`;
    const [outcome] = await this.#submitter.insertIn(client, [
      {
        tenantId: s.tenant_id,
        type: s.job.type,
        input: s.job.input,
        metadata: s.job.metadata,
        callbackUrl: s.job.callback_url,
        maxAttempts: type?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        backoff: type?.backoff ?? DEFAULT_BACKOFF,
        // The job type's own time limits, as a POST /v1/jobs without them gets.
        timeoutSeconds: type?.timeoutSeconds ?? null,
        expireAfterSeconds: type?.expireAfterSeconds ?? null,
        idempotency: { key, fingerprint: fingerprint({ schedule: s.id, at: fireAt.toISOString() }) },
        scheduleId: s.id,
      },
    ]);
    const jobId =
      outcome !== undefined && (outcome.kind === 'created' || outcome.kind === 'replayed') ? outcome.job.id : null;
    await recordFiring(client, s.id, { fireAt, next, outcome: 'created', jobId });
    if (outcome?.kind === 'created')
      this.#log.info({ schedule_id: s.id, fire_at: fireAt, job_id: jobId }, 'schedule fired');
  }
}
