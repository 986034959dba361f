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
 */
import { isConnectionError, type Queryable } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import { JOB_EVENTS_CHANNEL } from './repository.ts';

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

  /** `intervalMs`: least time between two statements (default ANNOUNCE_INTERVAL_MS). */
  constructor(db: Queryable, log: Logger, intervalMs = ANNOUNCE_INTERVAL_MS) {
    this.#db = db;
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  /** Queues the announcement of a job's events that have committed (only the highest seq is sent); it goes without waiting. */
  publish(jobId: string, ...seqs: number[]): void {
    if (seqs.length === 0) return;
    const highest = Math.max(...seqs);
    if (!((this.#pending.get(jobId) ?? -Infinity) >= highest)) this.#pending.set(jobId, highest);
    this.#sending ??= this.#send();
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
