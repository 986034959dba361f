/**
 * The circuit breaker's decision, kept apart from its table (breaker.ts): each dispatcher keeps the latest
 * outcomes per endpoint and opens the breaker when most of them failed.
 */
export interface BreakerSettings {
  /** How many of the latest outcomes are looked at. (Default: 20) */
  window: number;
  /** Opens when failures/outcomes in the window reach this ratio. (Default: 0.5) */
  failureRatio: number;
  /** …and the window holds at least this many outcomes. (Default: 5) */
  minRequests: number;
  /** How long an open breaker waits before a probe, in seconds. (Default: 30) */
  cooldownSeconds: number;
}

/** The latest outcomes of one endpoint, as a ring. */
export class OutcomeWindow {
  readonly #size: number;
  readonly #ring: boolean[] = [];
  #next = 0;

  constructor(size: number) {
    this.#size = size;
  }

  record(ok: boolean): void {
    if (this.#ring.length < this.#size) this.#ring.push(ok);
    else this.#ring[this.#next] = ok;
    this.#next = (this.#next + 1) % this.#size;
  }

  get total(): number {
    return this.#ring.length;
  }

  get failures(): number {
    return this.#ring.filter((ok) => !ok).length;
  }

  shouldOpen(s: BreakerSettings): boolean {
    return this.total >= s.minRequests && this.failures / this.total >= s.failureRatio;
  }

  reset(): void {
    this.#ring.length = 0;
    this.#next = 0;
  }
}
