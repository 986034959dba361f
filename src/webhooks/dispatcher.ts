/**
 * The webhook dispatcher: claims due deliveries from the outbox table, signs and sends them
 * concurrently (bounded overall and per endpoint), records each attempt, retries on a schedule,
 * holds deliveries to endpoints whose circuit breaker is open or that a 410 disabled, and parks exhausted
 * ones as DEAD.
 *
 * Why an own table and not pg-boss: the delivery row must be written by the very SQL statement that
 * makes the job terminal (a CTE of `transition()`), which pg-boss's API cannot join; deliveries to an
 * open endpoint must wait without spending attempts, and the per-endpoint concurrency limit must be
 * applied when claiming (pg-boss counts retries and groups per queue, not per URL); the API needs the
 * attempt log, per-tenant dead-letter listings and replays with the same webhook-id, which would all
 * have to be mirrored outside pg-boss anyway. Claiming is `FOR UPDATE SKIP LOCKED` with a lease, so
 * dispatchers in several processes share the work and a killed one's deliveries are retried.
 *
 * Wake-up: a subscription to the process's LISTEN connection (the outbox notifies on commit), with
 * polling as fallback and a timer for the next scheduled retry.
 *
 * This file is the orchestrator, with an explicit state; each part is a file of its own:
 * claimer.ts claims due deliveries into claim-buffer.ts (the claims held and the slots they take),
 * breaker-guard.ts admits them past the circuit breaker and keeps its windows, attempt.ts sends one
 * attempt, attempt-recorder.ts decides what its outcome makes of the delivery and records it, and
 * dead-letters.ts alerts on deliveries that went DEAD.
 */
import type { Config } from '../config.ts';
import type { PgListener } from '../db/listener.ts';
import type { Pool } from '../db/pool.ts';
import type { Alerts } from '../alerts/alerts.ts';
import type { Logger } from '../observability/logger.ts';
import type { Registry } from '../observability/metrics.ts';
import type { CallbackAllowList } from './allowlist.ts';
import { sendAttempt } from './attempt.ts';
import { AttemptRecorder, recordOf } from './attempt-recorder.ts';
import { BreakerGuard, type SendMode } from './breaker-guard.ts';
import { ClaimBuffer, type Claim } from './claim-buffer.ts';
import { Claimer } from './claimer.ts';
import { DeadLetters } from './dead-letters.ts';
import { webhookMetrics, type WebhookMetrics } from './metrics.ts';
import { WEBHOOKS_CHANNEL } from './outbox.ts';
import { WebhookSender } from './send.ts';

export interface DispatcherOptions {
  pool: Pool;
  /** The process's LISTEN connection (src/db/listener.ts). */
  listener: PgListener;
  settings: Config['webhooks'];
  allow: CallbackAllowList;
  log: Logger;
  registry: Registry;
  /** Where a delivery going DEAD raises an alert (cleared when a replay succeeds). */
  alerts?: Alerts | undefined;
  /** How long stop() lets in-flight attempts finish, in seconds. (Default: 30) */
  drainSeconds?: number;
}

/**
 * `running`: claiming and sending. `draining`: stop() was called; nothing new is claimed or started and
 * the attempts in flight finish. `abandoned`: the drain time ran out; results of attempts still running
 * are dropped, their claims given back.
 */
export type DispatcherState = 'running' | 'draining' | 'abandoned';

export class Dispatcher {
  readonly #opts: DispatcherOptions;
  readonly #settings: Config['webhooks'];
  readonly #sender: WebhookSender;
  readonly #metrics: WebhookMetrics;
  readonly #buffer: ClaimBuffer;
  readonly #breaker: BreakerGuard;
  readonly #claimer: Claimer;
  readonly #recorder: AttemptRecorder;
  readonly #deadLetters: DeadLetters;
  #state: DispatcherState = 'running';
  #unsubscribe: (() => Promise<void>) | undefined;
  #idleWaiters: Array<() => void> = [];

  constructor(opts: DispatcherOptions) {
    const { pool, settings, log } = opts;
    this.#opts = opts;
    this.#settings = settings;
    this.#sender = new WebhookSender({
      allow: opts.allow,
      timeoutSeconds: settings.timeoutSeconds,
      connectTimeoutSeconds: settings.connectTimeoutSeconds,
      connectionsPerEndpoint: settings.endpointConcurrency,
    });
    this.#metrics = webhookMetrics(opts.registry);
    this.#buffer = new ClaimBuffer(pool, {
      concurrency: settings.concurrency,
      endpointConcurrency: settings.endpointConcurrency,
      // Half the lease's spare over one attempt's timeout, so the other half is left to record the
      // result before the lease ends.
      startByMs: ((settings.leaseSeconds - settings.timeoutSeconds) / 2) * 1000,
    });
    const start = (claim: Claim, mode: SendMode) => this.#run(claim, mode);
    this.#breaker = new BreakerGuard({ pool, buffer: this.#buffer, settings, log, start });
    this.#claimer = new Claimer({
      pool,
      settings,
      buffer: this.#buffer,
      breaker: this.#breaker,
      log,
      metrics: this.#metrics,
      start,
    });
    this.#deadLetters = new DeadLetters(this.#metrics, log, opts.alerts);
    this.#recorder = new AttemptRecorder({
      pool,
      log,
      windowsOf: (endpoints) => this.#breaker.windowsOf(endpoints),
      onRecorded: (r) => this.#deadLetters.recorded(r),
    });
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#opts.listener.subscribe([WEBHOOKS_CHANNEL], {
      onNotification: () => this.wake(),
      // Anything committed while the connection was down (or before LISTEN took effect) is found by this claim.
      onConnect: () => this.wake(),
    });
    this.#claimer.start();
  }

  /** Claims due deliveries now (called on NOTIFY, by the poller and when a slot frees up). */
  wake(): void {
    this.#claimer.wake();
  }

  /** Number of attempts in flight. */
  get inFlight(): number {
    return this.#buffer.inFlight;
  }

  /**
   * Stops claiming, lets in-flight attempts finish (up to the drain time), records their results and
   * closes connections. Attempts still running after that are abandoned and their claims released, so
   * another dispatcher retries them without spending an attempt.
   */
  async stop(): Promise<void> {
    if (this.#state !== 'running') return;
    this.#state = 'draining';
    this.#claimer.stop();
    this.#recorder.stopRetrying();
    await this.#unsubscribe?.();
    await this.#buffer.giveBackBuffered().catch(() => undefined);
    if (this.#buffer.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      const drained = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
      const timeout = new Promise<void>(
        (resolve) => (timer = setTimeout(resolve, (this.#opts.drainSeconds ?? 30) * 1000)),
      );
      await Promise.race([drained, timeout]);
      clearTimeout(timer);
    }
    if (this.#buffer.inFlight > 0) {
      this.#state = 'abandoned';
      // Their requests end before the rows go back: released first, another dispatcher could send one
      // again while this one's request is still being answered.
      await this.#sender.destroy().catch(() => undefined);
      await this.#buffer.giveBackInFlight().catch(() => undefined);
    }
    await this.#recorder.drain();
    // The alerts of what was recorded go out before the caller closes the pool.
    await this.#deadLetters.settled();
    await this.#sender.close().catch(() => undefined);
  }

  /** Runs the attempt of a delivery counted in flight, then frees its slots and fills them again. */
  #run(claim: Claim, mode: SendMode): void {
    this.#attempt(claim, mode)
      .catch((err: unknown) =>
        this.#opts.log.error({ err, delivery: claim.row.id }, 'webhook dispatcher: attempt failed unexpectedly'),
      )
      .finally(() => {
        this.#buffer.finish(claim.row);
        if (this.#buffer.inFlight === 0) for (const w of this.#idleWaiters.splice(0)) w();
        this.#claimer.startBuffered();
        this.wake();
      });
  }

  async #attempt(claim: Claim, mode: SendMode): Promise<void> {
    const startedAt = new Date();
    const { result, signed } = await sendAttempt(this.#sender, this.#metrics, claim.row, startedAt);
    if (this.#state === 'abandoned') return;
    const record = recordOf(this.#settings, claim, startedAt, result, signed);
    if (result.kind === 'gone') await this.#breaker.disable(claim.row);
    this.#metrics.attempts.inc({ outcome: result.kind });
    this.#metrics.attemptDuration.observe(result.durationMs / 1000);
    if (record.countsForEndpoint) await this.#breaker.observe(claim.row.endpoint, record.ok, mode);
    this.#recorder.push(record);
  }
}
