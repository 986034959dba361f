/**
 * Claiming due deliveries for one dispatcher: one claim statement at a time, keeping deliveries claimed
 * ahead (CLAIM_AHEAD slots' worth) so slots that free up refill without waiting for a claim; a wake-up
 * while a claim runs makes another follow it. When a claim found fewer than it asked for, a timer wakes
 * it when the next delivery is due, with a poller as the fallback of every wake-up. Buffered deliveries
 * are started here as slots free up (claim-buffer.ts says when one may start).
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.ts';
import { isConnectionError, type Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import type { BreakerGuard, SendMode } from './breaker-guard.ts';
import { giveBack, type Claim, type ClaimBuffer } from './claim-buffer.ts';
import type { WebhookMetrics } from './metrics.ts';
import { claimDeliveries, secondsUntilNextDue } from './store.ts';

/** Most deliveries claimed by one statement. */
const MAX_CLAIM_BATCH = 256;
/**
 * Deliveries kept claimed per slot (overall and per endpoint), in flight and buffered. Claims run one at
 * a time and their cost grows much less than their size (bench/RESULTS.md, Webhooks), so claiming far
 * ahead is what lets throughput follow the HTTP round trip instead of the claim statement. A buffered
 * row is never started late in its lease (claim-buffer.ts), so a deep buffer does not risk an unrecorded
 * attempt.
 */
const CLAIM_AHEAD = 8;
/** Shortest wait before claiming again when the last claim found nothing (rows may be due but held). */
const IDLE_FLOOR_SECONDS = 0.05;
/** Wait before retrying a claim that failed. */
const CLAIM_RETRY_MS = 1_000;

/**
 * `idle`: no claim runs. `claiming`: one runs. `claim-again`: one runs and another follows it (a wake-up
 * came meanwhile, or the claim got all it asked for). `stopped`: nothing is claimed or started any more.
 */
export type ClaimMode = 'idle' | 'claiming' | 'claim-again' | 'stopped';

export interface ClaimerOptions {
  pool: Pool;
  settings: Pick<Config['webhooks'], 'concurrency' | 'endpointConcurrency' | 'leaseSeconds' | 'pollSeconds'>;
  buffer: ClaimBuffer;
  breaker: BreakerGuard;
  log: Logger;
  metrics: WebhookMetrics;
  /** Starts the attempt of a claimed delivery (already counted in flight). */
  start: (claim: Claim, mode: SendMode) => void;
}

export class Claimer {
  readonly #o: ClaimerOptions;
  #mode: ClaimMode = 'idle';
  #timer: NodeJS.Timeout | undefined;
  #poller: NodeJS.Timeout | undefined;

  constructor(opts: ClaimerOptions) {
    this.#o = opts;
  }

  /** Starts polling, and claims now. */
  start(): void {
    this.#poller = setInterval(() => this.wake(), this.#o.settings.pollSeconds * 1000);
    this.#poller.unref();
    this.wake();
  }

  /** Claims due deliveries now, or right after the claim that runs. */
  wake(): void {
    if (this.#mode === 'stopped') return;
    if (this.#mode === 'idle') void this.#claimLoop();
    else this.#mode = 'claim-again';
  }

  /** Claims and starts nothing more; a claim that runs ends with the statement it is in. */
  stop(): void {
    this.#mode = 'stopped';
    clearTimeout(this.#timer);
    clearInterval(this.#poller);
  }

  /** Starts buffered deliveries while there are free slots; gives back those buffered too long. */
  startBuffered(): void {
    if (this.#stopped()) return;
    const { start, late } = this.#o.buffer.takeStartable(performance.now());
    for (const claim of start) this.#o.start(claim, 'regular');
    if (late.length === 0) return;
    this.#o.metrics.givenBack.inc(late.length);
    void giveBack(
      this.#o.pool,
      late.map((c) => ({ id: c.row.id, token: c.token })),
    )
      .then(() => this.wake())
      .catch((err: unknown) =>
        this.#o.log.warn(
          { err },
          'webhook dispatcher: giving back deliveries buffered too long failed; their leases will expire',
        ),
      );
  }

  #stopped(): boolean {
    return this.#mode === 'stopped';
  }

  #armTimer(seconds: number): void {
    if (this.#stopped()) return;
    clearTimeout(this.#timer);
    const s = Math.min(Math.max(seconds, 0), this.#o.settings.pollSeconds);
    this.#timer = setTimeout(() => this.wake(), s * 1000);
    this.#timer.unref();
  }

  async #claimLoop(): Promise<void> {
    const { pool, settings, buffer } = this.#o;
    try {
      let lastClaimed = 0;
      let wanted = 0;
      do {
        this.#mode = 'claiming';
        this.startBuffered();
        // Keep deliveries claimed ahead, so finished slots refill without waiting for a claim.
        const claimed = buffer.claimed;
        wanted = Math.min(CLAIM_AHEAD * settings.concurrency - claimed, MAX_CLAIM_BATCH);
        if (this.#stopped() || wanted <= 0 || (claimed > 0 && wanted < Math.max(1, settings.concurrency / 4))) return;
        const token = randomUUID();
        const claimedAt = performance.now();
        const perEndpoint = CLAIM_AHEAD * settings.endpointConcurrency;
        const rows = await claimDeliveries(pool, {
          token,
          limit: wanted,
          perEndpoint,
          busy: buffer.roomPerEndpoint(perEndpoint),
          leaseSeconds: settings.leaseSeconds,
        });
        lastClaimed = rows.length;
        await this.#o.breaker.admit(rows, token, claimedAt);
        this.startBuffered();
        if (rows.length >= wanted && !this.#stopped()) this.#mode = 'claim-again';
      } while (this.#mode === 'claim-again');
      if (lastClaimed < wanted) {
        const due = await secondsUntilNextDue(pool);
        if (due !== undefined) this.#armTimer(Math.max(due, lastClaimed === 0 ? IDLE_FLOOR_SECONDS : 0));
      }
    } catch (err) {
      // An outage is logged once, by the listener.
      if (!this.#stopped() && !isConnectionError(err))
        this.#o.log.warn({ err }, 'webhook dispatcher: claiming deliveries failed');
      this.#armTimer(CLAIM_RETRY_MS / 1000);
    } finally {
      if (!this.#stopped()) this.#mode = 'idle';
    }
  }
}
