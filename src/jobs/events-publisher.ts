/**
 * Announces committed job events (`jobId:seq` on JOB_EVENTS_CHANNEL) after their transaction has
 * committed, many per statement, at most one statement every ANNOUNCE_INTERVAL_MS.
 *
 * Why not pg_notify inside the transaction: a transaction that notifies takes Postgres's global
 * notify-queue lock at commit and holds it through its WAL flush, so every notifying commit of every
 * session waits for the one before it. The worker's checkpoints and status changes commit without
 * notifying, and this publisher sends their announcements afterwards, group-commit style: at once
 * when idle, and while one statement is in flight, or the last went less than ANNOUNCE_INTERVAL_MS ago,
 * the next batch collects.
 *
 * The event (a `job_events` row for a status, the jobs row's progress for a checkpoint) commits with
 * the change; the announcement only tells readers to look. Readers read a job's events by sequence up to the highest seq announced
 * (src/realtime/hub.ts), so of the announcements of one job that wait together only the highest is
 * sent (a tiny job's claim and completion announce four events; this sends one or two). One lost to a crash between the commit and the announcement (or to a failed
 * send) is found by readers reading events by sequence (the realtime hub's catch-up).
 *
 * Only while a stream is open somewhere: readers are the hubs of the API processes with a stream open,
 * and each says so on STREAM_FOLLOWERS_CHANNEL (at once, then every FOLLOWING_HEARTBEAT_MS). Given the
 * process's LISTEN connection, the publisher announces until three heartbeats are missed; otherwise it
 * keeps each job's newest seq for SKIPPED_KEEP_MS and sends those when a hub begins to follow, so that
 * what committed between the hub's first read and its `follow` reaching here is announced too. On
 * listening (and again after each reconnection) it asks, and following hubs answer.
 */
import type { PgListener } from '../db/listener.ts';
import { isConnectionError, type Queryable } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import { FOLLOWING_HEARTBEAT_MS, JOB_EVENTS_CHANNEL, STREAM_FOLLOWERS_CHANNEL } from './repository.ts';

/** Announcements per statement: keeps one statement's notify-queue insert short. */
const MAX_BATCH = 1000;

/**
 * Least time between two announcing statements. A job checkpointing small chunks commits one after
 * another; announcing each commit on its own cost a second statement per checkpoint, as much work as the
 * checkpoint's own. Announcements that come sooner wait together for the next statement, which sends
 * only each job's highest seq: a reader hears of a change at most this much later, never not at all.
 */
export const ANNOUNCE_INTERVAL_MS = 5;

/**
 * Announces a batch, committed without waiting for its WAL flush (synchronous_commit off for this
 * transaction alone): a NOTIFY takes a transaction id, so its commit writes a record, and a synchronous
 * one would cost every checkpoint a second flush. An announcement lost to a crash before that flush is
 * like one lost between a commit and its announcement: readers catch up by sequence.
 */
const ANNOUNCE_SQL = `SELECT pg_notify($1, p) FROM set_config('synchronous_commit', 'off', true), unnest($2::text[]) AS p`;

/** Announcements go out until this long after the last `follow`: three heartbeats. */
export const FOLLOWED_FOR_MS = 3 * FOLLOWING_HEARTBEAT_MS;

/**
 * How long an announcement not sent (no hub following) is kept, to be sent if one begins to follow: past
 * the hub's catch-up interval (src/realtime/hub.ts), the hub has read it by then anyway.
 */
export const SKIPPED_KEEP_MS = 3_000;

/** Jobs whose announcement is kept while nobody follows (the oldest go first). */
const SKIPPED_MAX = 10_000;

/** Says something on STREAM_FOLLOWERS_CHANNEL (`ask` or `follow`), without waiting for a flush. */
export const FOLLOWERS_SQL = `SELECT pg_notify('${STREAM_FOLLOWERS_CHANNEL}', $1) FROM set_config('synchronous_commit', 'off', true)`;

/** The announcement of event `seq` of a job, as readers expect it on JOB_EVENTS_CHANNEL. */
function announcement(jobId: string, seq: number): string {
  return `${jobId}:${seq}`;
}

export class JobEventsPublisher {
  readonly #db: Queryable;
  readonly #log: Logger;
  /** Job id → the highest seq waiting to be announced. */
  #pending = new Map<string, number>();
  #sending: Promise<void> | undefined;
  readonly #intervalMs: number;
  /** When the last announcing statement was sent (performance.now()). */
  #sentAt = -Infinity;
  readonly #listener: PgListener | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  /** Announcements go out until then (on #now's clock); always without a listener. */
  #followedUntil: number;
  /** Job id → the newest seq not announced while nobody followed, and when (oldest first). */
  #skipped = new Map<string, { seq: number; at: number }>();
  /** The clock of the following and keeping windows. */
  readonly #now: () => number;

  /**
   * `intervalMs`: least time between two statements (default ANNOUNCE_INTERVAL_MS). `listener`: the
   * process's LISTEN connection, to announce only while a hub follows (default: none, always announce).
   * `now`: the clock, in ms, that times how long a `follow` lasts and a skipped announcement is kept
   * (default performance.now; a test moves its own past those windows).
   */
  constructor(
    db: Queryable,
    log: Logger,
    opts: { intervalMs?: number; listener?: PgListener; now?: () => number } = {},
  ) {
    this.#db = db;
    this.#log = log;
    this.#intervalMs = opts.intervalMs ?? ANNOUNCE_INTERVAL_MS;
    this.#listener = opts.listener;
    this.#now = opts.now ?? (() => performance.now());
    this.#followedUntil = this.#listener === undefined ? Infinity : -Infinity;
  }

  /** Listens for following hubs (with a listener), and asks whether any follows. */
  async start(): Promise<void> {
    this.#unsubscribe ??= await this.#listener?.subscribe([STREAM_FOLLOWERS_CHANNEL], {
      onNotification: (_channel, payload) => {
        if (payload === 'follow') this.#followed();
      },
      // Now, and after a reconnection (a `follow` may have been missed meanwhile).
      onConnect: () => void this.#ask(),
    });
  }

  async stop(): Promise<void> {
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    await unsubscribe?.();
  }

  /** Queues the announcement of a job's events that have committed (only the highest seq is sent); it goes without waiting. */
  publish(jobId: string, ...seqs: number[]): void {
    if (seqs.length === 0) return;
    const highest = Math.max(...seqs);
    if (this.#now() >= this.#followedUntil) {
      this.#skip(jobId, highest);
      return;
    }
    this.#queue(jobId, highest);
  }

  #queue(jobId: string, seq: number): void {
    if (!((this.#pending.get(jobId) ?? -Infinity) >= seq)) this.#pending.set(jobId, seq);
    this.#sending ??= this.#send();
  }

  #skip(jobId: string, seq: number): void {
    const now = this.#now();
    const had = this.#skipped.get(jobId);
    this.#skipped.delete(jobId);
    this.#skipped.set(jobId, { seq: Math.max(seq, had?.seq ?? -Infinity), at: now });
    for (const [id, s] of this.#skipped) {
      if (this.#skipped.size <= SKIPPED_MAX && now - s.at < SKIPPED_KEEP_MS) break;
      this.#skipped.delete(id);
    }
  }

  /** A hub follows: announce from now on, starting with what was skipped lately. */
  #followed(): void {
    const now = this.#now();
    this.#followedUntil = now + FOLLOWED_FOR_MS;
    for (const [id, s] of this.#skipped) if (now - s.at < SKIPPED_KEEP_MS) this.#queue(id, s.seq);
    this.#skipped.clear();
  }

  async #ask(): Promise<void> {
    try {
      await this.#db.query(FOLLOWERS_SQL, ['ask']);
    } catch (err) {
      // Unanswered, announcements wait for the next `follow` (a hub says it again within its heartbeat).
      if (!isConnectionError(err)) this.#log.warn({ err }, 'asking for stream followers failed');
    }
  }

  /** Resolves once everything published so far has been sent (or failed to send). */
  async flush(): Promise<void> {
    while (this.#sending !== undefined) await this.#sending;
  }

  async #send(): Promise<void> {
    // Let the announcements published in this same tick join the first statement.
    await Promise.resolve();
    while (this.#pending.size > 0) {
      const wait = this.#sentAt + this.#intervalMs - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.#sentAt = performance.now();
      const batch: string[] = [];
      for (const [jobId, seq] of this.#pending) {
        if (batch.length === MAX_BATCH) break;
        batch.push(announcement(jobId, seq));
        this.#pending.delete(jobId);
      }
      try {
        await this.#db.query(ANNOUNCE_SQL, [JOB_EVENTS_CHANNEL, batch]);
      } catch (err) {
        // Readers catch up by sequence; a lost announcement only delays them. An outage
        // is logged once, by the process's listener.
        if (!isConnectionError(err))
          this.#log.warn({ err, announcements: batch.length }, 'announcing job events failed');
      }
    }
    this.#sending = undefined;
  }
}
