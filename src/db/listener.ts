/**
 * The one LISTEN connection of a process. The worker (pg-boss's wake-up and cancellations), the webhook
 * dispatcher (the outbox) and the realtime hub (job events) subscribe to their channels here instead of
 * holding connections of their own. When the connection is lost it is re-established with capped,
 * jittered backoff and every channel is listened to again; Postgres does not replay notifications sent
 * meanwhile, so each subscriber's `onConnect` re-reads what it follows.
 *
 * Losing this connection is how a process learns that the database went away, and getting it back
 * how it learns that the database is back: the outage is logged here, once when it starts and once
 * when it ends, and `connected` is what readiness and the API's fail-fast check read.
 */
import pg from 'pg';
import type { Logger } from '../observability/logger.ts';
import { isConnectionError } from './pool.ts';

/** First wait before reconnecting; doubled per failed attempt up to the cap. */
const RECONNECT_INITIAL_MS = 100;
/** Longest wait between attempts: a database that is back is noticed within about this long. */
const RECONNECT_MAX_MS = 500;
/** TCP keep-alive so a silently dead connection is noticed (the connection is otherwise idle). */
const KEEPALIVE_DELAY_MS = 10_000;
/** An attempt to connect that takes longer than this is abandoned and retried. */
const CONNECT_TIMEOUT_MS = 2_000;

export interface Subscriber {
  onNotification(channel: string, payload: string): void;
  /** LISTEN is in place on this connection (after subscribing, and after every reconnection): re-read what may have been missed. */
  onConnect(): void;
}

export interface ListenerOptions {
  databaseUrl: string;
  log: Logger;
  applicationName?: string;
}

/** The wait before the next attempt: half the current backoff plus a random part of the other half. */
export function jittered(backoffMs: number, random: () => number = Math.random): number {
  return backoffMs / 2 + random() * (backoffMs / 2);
}

export class PgListener {
  readonly #opts: ListenerOptions;
  readonly #log: Logger;
  readonly #subscribers = new Map<Subscriber, readonly string[]>();
  #client: pg.Client | undefined;
  #stopped = false;
  #backoff = RECONNECT_INITIAL_MS;
  #timer: NodeJS.Timeout | undefined;
  #connecting: Promise<void> | undefined;
  /** When the connection was lost (performance.now()), while it is down. */
  #downSince: number | undefined;
  #attempts = 0;
  /** Whether the connection was ever up: a process that starts without its database says so differently. */
  #everConnected = false;
  readonly #waiters = new Set<{ resolve(): void; reject(err: Error): void }>();

  constructor(opts: ListenerOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'listener' });
  }

  /** True while the connection is up and every channel listened to. */
  get connected(): boolean {
    return this.#client !== undefined;
  }

  /** Connects; resolves after the first attempt, whatever its outcome (a failed one is retried in the background). */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#attempt();
  }

  /**
   * Resolves once the connection is up (at once if it is). Rejects with `signal`'s reason when it is
   * aborted first, and with the error of an attempt that failed for another reason than an unreachable
   * database (a wrong password, a database that does not exist): waiting would not mend that.
   */
  untilConnected(signal?: AbortSignal): Promise<void> {
    if (this.#client !== undefined) return Promise.resolve();
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const onAbort = () => waiter.reject(asError(signal?.reason));
      const waiter = {
        resolve: () => {
          this.#waiters.delete(waiter);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: Error) => {
          this.#waiters.delete(waiter);
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      this.#waiters.add(waiter);
      this.#timer?.ref();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#connecting;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  /**
   * Listens to `channels` for `subscriber`: now if connected (then `onConnect` is called), and again
   * after every reconnection. Returns the function that ends the subscription.
   */
  async subscribe(channels: readonly string[], subscriber: Subscriber): Promise<() => Promise<void>> {
    this.#subscribers.set(subscriber, channels);
    const client = this.#client;
    if (client !== undefined) {
      const listened = await client.query(channels.map(listenSql).join('; ')).then(
        () => true,
        // The connection broke meanwhile: the reconnection listens again and calls onConnect.
        () => false,
      );
      if (listened && this.#client === client && this.#subscribers.has(subscriber)) subscriber.onConnect();
    }
    return async () => {
      if (!this.#subscribers.delete(subscriber)) return;
      const still = new Set([...this.#subscribers.values()].flat());
      const unused = channels.filter((c) => !still.has(c));
      if (unused.length > 0)
        await this.#client
          ?.query(unused.map((c) => `UNLISTEN ${pg.escapeIdentifier(c)}`).join('; '))
          .catch(() => undefined);
    };
  }

  #attempt(): Promise<void> {
    this.#connecting = this.#connect()
      .catch((err: unknown) => {
        this.#lost(err);
      })
      .finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #connect(): Promise<void> {
    this.#attempts++;
    const client = new pg.Client({
      connectionString: this.#opts.databaseUrl,
      application_name: this.#opts.applicationName ?? 'longhaul-listen',
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    client.on('notification', (n) => {
      if (n.payload === undefined) return;
      for (const [subscriber, channels] of this.#subscribers)
        if (channels.includes(n.channel)) subscriber.onNotification(n.channel, n.payload);
    });
    // Every error of this connection ends it; the 'end' that follows (or a failed connect) reconnects.
    client.on('error', (err) => {
      if (this.#client === client) this.#lost(err);
    });
    client.on('end', () => {
      if (this.#client === client) this.#lost(new Error('the LISTEN connection ended'));
    });
    try {
      await client.connect();
      const channels = [...new Set([...this.#subscribers.values()].flat())];
      if (channels.length > 0) await client.query(channels.map(listenSql).join('; '));
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.#stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#backoff = RECONNECT_INITIAL_MS;
    if (this.#downSince !== undefined) {
      this.#log.info(
        { down_ms: Math.round(performance.now() - this.#downSince), attempts: this.#attempts },
        'database connection restored',
      );
      this.#downSince = undefined;
    }
    this.#attempts = 0;
    this.#everConnected = true;
    for (const waiter of [...this.#waiters]) waiter.resolve();
    for (const subscriber of [...this.#subscribers.keys()]) subscriber.onConnect();
  }

  /** The connection is gone (or could not be made): log the outage once, and try again after the backoff. */
  #lost(err: unknown): void {
    const client = this.#client;
    this.#client = undefined;
    client?.end().catch(() => undefined);
    if (this.#stopped) return;
    if (!isConnectionError(err)) for (const waiter of [...this.#waiters]) waiter.reject(asError(err));
    if (this.#downSince === undefined) {
      this.#downSince = performance.now();
      this.#log.warn(
        { err },
        this.#everConnected
          ? 'database connection lost; reconnecting until it answers again'
          : 'database unreachable; waiting until it answers',
      );
    }
    clearTimeout(this.#timer);
    const wait = jittered(this.#backoff);
    this.#backoff = Math.min(RECONNECT_MAX_MS, this.#backoff * 2);
    this.#timer = setTimeout(() => void this.#attempt(), wait);
    this.#log.debug({ attempts: this.#attempts, retry_in_ms: Math.round(wait) }, 'database connection: retrying');
    // A process that waits for its database at start-up has nothing else to keep it alive.
    if (this.#waiters.size === 0) this.#timer.unref();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function listenSql(channel: string): string {
  return `LISTEN ${pg.escapeIdentifier(channel)}`;
}
