/**
 * One dedicated Postgres connection per API process that LISTENs on the job-events channel, and
 * reconnects (with backoff) when it is lost. Notifications sent while it was down are not replayed by
 * Postgres; `onConnect` tells the owner to re-read what it follows, which it does by sequence number.
 */
import pg from 'pg';
import type { Logger } from '../observability/logger.ts';

/** First wait before reconnecting, doubled per failure up to the cap. */
const RECONNECT_INITIAL_MS = 100;
const RECONNECT_MAX_MS = 5_000;
/** TCP keep-alive so a silently dead connection is noticed (the connection is otherwise idle). */
const KEEPALIVE_DELAY_MS = 10_000;

export interface ListenerOptions {
  databaseUrl: string;
  channel: string;
  log: Logger;
  onNotification(payload: string): void;
  /** Called after every (re)connection, once LISTEN is in place. */
  onConnect(): void;
}

export class NotificationListener {
  readonly #opts: ListenerOptions;
  #client: pg.Client | undefined;
  #connected = false;
  #stopped = false;
  #delay = RECONNECT_INITIAL_MS;
  #timer: NodeJS.Timeout | undefined;
  #connecting: Promise<void> | undefined;

  constructor(opts: ListenerOptions) {
    this.#opts = opts;
  }

  /** True while LISTEN is active (the readiness check). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Connects once; resolves when LISTEN is active, rejects if the first attempt fails. */
  async start(): Promise<void> {
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#connecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = undefined;
    this.#connected = false;
    await client?.end().catch(() => undefined);
  }

  #connect(): Promise<void> {
    this.#connecting = (async () => {
      const client = new pg.Client({
        connectionString: this.#opts.databaseUrl,
        application_name: 'longhaul-realtime',
        keepAlive: true,
        keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
      });
      client.on('notification', (n) => {
        if (n.channel === this.#opts.channel && n.payload !== undefined) this.#opts.onNotification(n.payload);
      });
      const lost = (err?: Error) => {
        if (this.#client !== client) return;
        this.#client = undefined;
        this.#connected = false;
        client.end().catch(() => undefined);
        if (this.#stopped) return;
        this.#opts.log.warn({ err }, 'realtime listener lost its connection; reconnecting');
        this.#schedule();
      };
      client.on('error', lost);
      client.on('end', () => lost());
      try {
        await client.connect();
        await client.query(`LISTEN ${pg.escapeIdentifier(this.#opts.channel)}`);
      } catch (err) {
        await client.end().catch(() => undefined);
        throw err;
      }
      if (this.#stopped) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      this.#connected = true;
      this.#delay = RECONNECT_INITIAL_MS;
      this.#opts.onConnect();
    })();
    return this.#connecting;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    const wait = this.#delay;
    this.#delay = Math.min(RECONNECT_MAX_MS, this.#delay * 2);
    this.#timer = setTimeout(() => {
      this.#connect().catch((err: unknown) => {
        if (this.#stopped) return;
        this.#opts.log.warn({ err }, 'realtime listener could not reconnect; retrying');
        this.#schedule();
      });
    }, wait);
  }
}
