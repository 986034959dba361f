/**
 * The dispatcher's side of the circuit breaker (breaker.ts holds its table): a window of the latest
 * outcomes per endpoint, opening the breaker when most of them failed, the one probe of an endpoint whose
 * breaker is not closed and its verdict, and a 410's disabling. Once this dispatcher knows an endpoint is
 * not to be called, nothing buffered for it starts and all of it goes back, unspent.
 */
import type { Config } from '../config.ts';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import { openBreaker } from './breaker.ts';
import { OutcomeWindow } from './breaker-window.ts';
import { giveBack, type Claim, type ClaimBuffer } from './claim-buffer.ts';
import { closeBreaker, takeProbe } from './endpoints.ts';
import type { ClaimedDelivery } from './store.ts';

/** A regular attempt, or the one probe that decides whether a breaker that is not closed closes. */
export type SendMode = 'regular' | 'probe';

export interface BreakerGuardOptions {
  pool: Pool;
  buffer: ClaimBuffer;
  settings: Pick<Config['webhooks'], 'breaker' | 'leaseSeconds'>;
  log: Logger;
  /** Starts the attempt of a claimed delivery (already counted in flight). */
  start: (claim: Claim, mode: SendMode) => void;
}

export class BreakerGuard {
  readonly #o: BreakerGuardOptions;
  readonly #windows = new Map<string, OutcomeWindow>();

  constructor(opts: BreakerGuardOptions) {
    this.#o = opts;
  }

  /**
   * Buffers the claimed deliveries of endpoints whose breaker is closed; of each other endpoint one is
   * sent as its probe if this dispatcher wins it, and the rest (with what is buffered for it) go back.
   */
  async admit(rows: ClaimedDelivery[], token: string, claimedAt: number): Promise<void> {
    const { pool, buffer } = this.#o;
    const notClosed = new Map<string, ClaimedDelivery[]>();
    for (const row of rows) {
      if (row.endpoint_state === null || row.endpoint_state === 'closed') {
        buffer.letThrough(row.endpoint);
        buffer.add({ row, token, claimedAt });
      } else notClosed.set(row.endpoint, [...(notClosed.get(row.endpoint) ?? []), row]);
    }
    for (const [endpoint, group] of notClosed) {
      buffer.holdBack(endpoint);
      const won = await takeProbe(pool, endpoint, this.#o.settings.leaseSeconds);
      const [probe, ...rest] = group;
      const back = won && probe !== undefined ? rest : group;
      if (won && probe !== undefined) {
        this.#o.log.info({ endpoint }, 'webhook circuit breaker half-open: sending one probe');
        const claim = { row: probe, token, claimedAt };
        buffer.begin(claim);
        this.#o.start(claim, 'probe');
      }
      await buffer.giveBackBuffered(endpoint);
      await giveBack(
        pool,
        back.map((r) => ({ id: r.id, token })),
      );
    }
  }

  /** Counts an attempt's outcome for its endpoint and opens or closes the breaker as it tells. */
  async observe(endpoint: string, ok: boolean, mode: SendMode): Promise<void> {
    const { pool, buffer, log } = this.#o;
    const { breaker } = this.#o.settings;
    let window = this.#windows.get(endpoint);
    if (window === undefined) this.#windows.set(endpoint, (window = new OutcomeWindow(breaker.window)));
    window.record(ok);
    try {
      if (mode === 'probe' && ok) {
        await closeBreaker(pool, endpoint);
        buffer.letThrough(endpoint);
        window.reset();
        log.info({ endpoint }, 'webhook circuit breaker closed: the probe succeeded');
      } else if (mode === 'probe') {
        await openBreaker(pool, endpoint, breaker.cooldownSeconds, ['half_open', 'open']);
        await buffer.giveBackBuffered(endpoint);
        log.warn({ endpoint }, 'webhook circuit breaker stays open: the probe failed');
      } else if (!ok && window.shouldOpen(breaker)) {
        const counts = { total: window.total, failures: window.failures };
        window.reset();
        // Opened here or already by another dispatcher: either way, nothing buffered for it starts, even
        // while openBreaker runs, and all of it goes back. Held back again after it: a claim that ran
        // meanwhile may have seen the endpoint still closed.
        buffer.holdBack(endpoint);
        const opened = await openBreaker(pool, endpoint, breaker.cooldownSeconds);
        buffer.holdBack(endpoint);
        await buffer.giveBackBuffered(endpoint);
        if (opened)
          log.warn(
            { endpoint, ...counts, cooldown_seconds: breaker.cooldownSeconds },
            'webhook circuit breaker opened',
          );
      }
    } catch (err) {
      log.warn({ err, endpoint }, 'webhook dispatcher: updating the circuit breaker failed');
    }
  }

  /**
   * A 410 disables the tenant's endpoint (recorded with the attempt) until it is enabled again; this
   * delivery and the endpoint's others wait, unspent, and go out once it is. Nothing buffered here starts.
   */
  async disable(row: ClaimedDelivery): Promise<void> {
    this.#o.buffer.holdBack(row.endpoint);
    await this.#o.buffer
      .giveBackBuffered(row.endpoint)
      .catch((err: unknown) =>
        this.#o.log.warn({ err }, 'webhook dispatcher: giving back deliveries of a disabled endpoint failed'),
      );
    this.#o.log.warn(
      { endpoint: row.endpoint, tenant_id: row.tenant_id },
      'webhook endpoint answered 410 Gone: disabled until enabled again',
    );
  }

  /** The windows' counts of these endpoints, recorded with their attempts (shown by the API). */
  windowsOf(endpoints: Iterable<string>): Map<string, { total: number; failures: number }> {
    const out = new Map<string, { total: number; failures: number }>();
    for (const endpoint of endpoints) {
      const w = this.#windows.get(endpoint);
      if (w !== undefined) out.set(endpoint, { total: w.total, failures: w.failures });
    }
    return out;
  }
}
