/**
 * The deliveries one dispatcher holds claimed: buffered (claimed ahead, not started) or in flight, and
 * the slots they take, overall and per endpoint. A buffered delivery starts only in a free slot of both,
 * never while its endpoint is held back (its breaker is not closed, or a 410 disabled it), and never late
 * in its lease: one not started within `startByMs` of its claim is handed out to be given back instead,
 * so every attempt started has time left to be recorded before its lease ends. Claims go back by their
 * token, so one that another dispatcher has taken over since is never touched.
 */
import type { Queryable } from '../db/pool.ts';
import { releaseDeliveries, type ClaimedDelivery } from './store.ts';

/** A claimed delivery with its claim; `claimedAt` (performance.now()) is taken before the claim statement. */
export interface Claim {
  row: ClaimedDelivery;
  token: string;
  claimedAt: number;
}

export interface Slots {
  /** Attempts in flight at most. */
  concurrency: number;
  /** Attempts in flight to one endpoint at most. */
  endpointConcurrency: number;
  /** Milliseconds after its claim by which a buffered delivery must start. */
  startByMs: number;
}

/** Gives claims back unattempted (due now, nothing spent), one statement per claim token. */
export async function giveBack(db: Queryable, claims: ReadonlyArray<{ id: string; token: string }>): Promise<void> {
  const byToken = new Map<string, string[]>();
  for (const c of claims) byToken.set(c.token, [...(byToken.get(c.token) ?? []), c.id]);
  for (const [token, ids] of byToken) await releaseDeliveries(db, ids, token);
}

export class ClaimBuffer {
  readonly #db: Queryable;
  readonly #slots: Slots;
  #buffered: Claim[] = [];
  /** In-flight deliveries: id → claim token. */
  readonly #inFlight = new Map<string, string>();
  readonly #inFlightPerEndpoint = new Map<string, number>();
  /**
   * Endpoints whose breaker this dispatcher knows is not closed (it or another dispatcher opened it, or
   * it is half-open), or that a 410 disabled: their buffered deliveries are given back, never started.
   */
  readonly #heldBack = new Set<string>();

  constructor(db: Queryable, slots: Slots) {
    this.#db = db;
    this.#slots = slots;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Deliveries held claimed: in flight and buffered. */
  get claimed(): number {
    return this.#inFlight.size + this.#buffered.length;
  }

  add(claim: Claim): void {
    this.#buffered.push(claim);
  }

  holdBack(endpoint: string): void {
    this.#heldBack.add(endpoint);
  }

  /** The endpoint's breaker is closed again (a claim returned it closed, or this dispatcher's probe closed it). */
  letThrough(endpoint: string): void {
    this.#heldBack.delete(endpoint);
  }

  /**
   * For the claim statement: each endpoint with deliveries held here and how many more it may take, when
   * each endpoint may have `perEndpoint` claimed in all.
   */
  roomPerEndpoint(perEndpoint: number): Map<string, number> {
    const claimed = new Map<string, number>(this.#inFlightPerEndpoint);
    for (const c of this.#buffered) claimed.set(c.row.endpoint, (claimed.get(c.row.endpoint) ?? 0) + 1);
    const room = new Map<string, number>();
    for (const [endpoint, n] of claimed) room.set(endpoint, Math.max(0, perEndpoint - n));
    return room;
  }

  /** Counts a delivery in flight (its slots are taken until `finish`). */
  begin(claim: Claim): void {
    this.#inFlight.set(claim.row.id, claim.token);
    const endpoint = claim.row.endpoint;
    this.#inFlightPerEndpoint.set(endpoint, (this.#inFlightPerEndpoint.get(endpoint) ?? 0) + 1);
  }

  finish(row: ClaimedDelivery): void {
    this.#inFlight.delete(row.id);
    const left = (this.#inFlightPerEndpoint.get(row.endpoint) ?? 1) - 1;
    if (left <= 0) this.#inFlightPerEndpoint.delete(row.endpoint);
    else this.#inFlightPerEndpoint.set(row.endpoint, left);
  }

  /**
   * Takes the buffered deliveries that may start now, counted in flight (`begin`), while slots are free;
   * those buffered too long (`late`) are taken out to be given back.
   */
  takeStartable(now: number): { start: Claim[]; late: Claim[] } {
    const lateBefore = now - this.#slots.startByMs;
    const start: Claim[] = [];
    const late: Claim[] = [];
    for (let i = 0; i < this.#buffered.length && this.#inFlight.size < this.#slots.concurrency;) {
      const c = this.#buffered[i];
      if (c !== undefined && c.claimedAt < lateBefore) {
        this.#buffered.splice(i, 1);
        late.push(c);
      } else if (
        c !== undefined &&
        !this.#heldBack.has(c.row.endpoint) &&
        (this.#inFlightPerEndpoint.get(c.row.endpoint) ?? 0) < this.#slots.endpointConcurrency
      ) {
        this.#buffered.splice(i, 1);
        this.begin(c);
        start.push(c);
      } else i++;
    }
    return { start, late };
  }

  /** Gives back buffered deliveries not yet started (of one endpoint, or all), due now and unspent. */
  async giveBackBuffered(endpoint?: string): Promise<void> {
    const keep: Claim[] = [];
    const give: Claim[] = [];
    for (const c of this.#buffered) (endpoint !== undefined && c.row.endpoint !== endpoint ? keep : give).push(c);
    this.#buffered = keep;
    await giveBack(
      this.#db,
      give.map((c) => ({ id: c.row.id, token: c.token })),
    );
  }

  /** Gives back the claims of attempts still in flight (when stopping gave up waiting for them). */
  async giveBackInFlight(): Promise<void> {
    await giveBack(
      this.#db,
      [...this.#inFlight].map(([id, token]) => ({ id, token })),
    );
  }
}
