/**
 * What an attempt's outcome makes of its delivery (succeeded, retried after the schedule's delay, waiting
 * on a disabled endpoint, or dead), and recording it: group commit, so results that arrive while a batch
 * is being written go in the next one, as one statement. A batch that fails is retried as a whole until
 * it is recorded, except while the dispatcher stops (then its leases expire and the deliveries are
 * retried). A row whose data Postgres refuses is left to its lease and cannot keep the others of its
 * batch from being recorded.
 */
import type { Config } from '../config.ts';
import { isConnectionError, isDataException, type Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import { nextDelaySeconds } from './schedule.ts';
import type { AttemptResult } from './send.ts';
import { recordAttempts, type AttemptRecord, type ClaimedDelivery } from './store.ts';

/** Most attempts recorded by one statement. */
const MAX_RECORD_BATCH = 512;
/** Wait before retrying a batch that could not be recorded. */
const RECORD_RETRY_MS = 1_000;

/** An attempt's record with what its dead-lettering or replay needs. */
export interface RecordedAttempt extends AttemptRecord {
  webhookId: string;
  jobId: string;
  tenantId: string;
  url: string;
  attempt: number;
  replayed: boolean;
}

/**
 * `until-recorded`: a batch that fails is retried. `best-effort`: the dispatcher is stopping, and a batch
 * that fails is dropped (logged) to its leases.
 */
export type RecordingMode = 'until-recorded' | 'best-effort';

/**
 * The record of an attempt: its delivery's next status and, for a retry, the delay. `signed` is false
 * when the tenant had nothing to sign with (no request went out).
 */
export function recordOf(
  policy: Config['webhooks'],
  claim: { row: ClaimedDelivery; token: string },
  startedAt: Date,
  result: AttemptResult,
  signed: boolean,
): RecordedAttempt {
  const { row } = claim;
  const attempt = row.attempts_made + 1;
  const ok = result.kind === 'success';
  let status: AttemptRecord['status'] = 'SUCCEEDED';
  let delaySeconds = 0;
  if (result.kind === 'refused') status = 'DEAD';
  else if (result.kind === 'gone') status = 'PENDING';
  else if (!ok) {
    const delay = nextDelaySeconds(policy, {
      attempt,
      throttled: result.kind === 'throttled',
      retryAfterSeconds: result.retryAfterSeconds,
    });
    if (delay === undefined) status = 'DEAD';
    else {
      status = 'PENDING';
      delaySeconds = delay;
    }
  }
  return {
    id: row.id,
    token: claim.token,
    endpoint: row.endpoint,
    status,
    delaySeconds,
    startedAt,
    durationMs: result.durationMs,
    statusCode: result.statusCode,
    error: result.error,
    response: result.response,
    // Only a request that went out says something about the endpoint: a refused URL, or a tenant without
    // a secret (a misconfiguration of one tenant), must not open the breaker of an endpoint others share.
    countsForEndpoint: result.kind !== 'refused' && signed,
    ok,
    gone: result.kind === 'gone',
    webhookId: row.webhook_id,
    jobId: row.job_id,
    tenantId: row.tenant_id,
    url: row.url,
    attempt,
    replayed: row.replayed,
  };
}

export interface AttemptRecorderOptions {
  pool: Pool;
  log: Logger;
  /** The breaker windows' counts of these endpoints, recorded with the batch. */
  windowsOf: (endpoints: Iterable<string>) => Map<string, { total: number; failures: number }>;
  /** Called for each attempt once it is recorded. */
  onRecorded: (r: RecordedAttempt) => void;
}

export class AttemptRecorder {
  readonly #o: AttemptRecorderOptions;
  #waiting: RecordedAttempt[] = [];
  #flushing: Promise<void> | undefined;
  #mode: RecordingMode = 'until-recorded';

  constructor(opts: AttemptRecorderOptions) {
    this.#o = opts;
  }

  push(r: RecordedAttempt): void {
    this.#waiting.push(r);
    this.#kick();
  }

  /** From now on a batch that fails is dropped to its leases instead of retried. */
  stopRetrying(): void {
    this.#mode = 'best-effort';
  }

  /** Records everything pushed so far. */
  async drain(): Promise<void> {
    await this.#flushing;
    await this.#flush();
  }

  #kick(): void {
    if (this.#flushing !== undefined) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#waiting.length > 0) this.#kick();
    });
  }

  async #flush(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batch = this.#waiting.splice(0, MAX_RECORD_BATCH);
      let recorded: Set<string>;
      try {
        recorded = await this.#record(batch);
      } catch (err) {
        if (this.#mode === 'best-effort') {
          this.#o.log.error(
            { err, n: batch.length },
            'webhook dispatcher: could not record attempts while stopping; their leases will expire and they are retried',
          );
          return;
        }
        if (!isConnectionError(err))
          this.#o.log.warn({ err }, 'webhook dispatcher: recording attempts failed; retrying');
        this.#waiting.unshift(...batch);
        await new Promise((r) => setTimeout(r, RECORD_RETRY_MS));
        continue;
      }
      for (const r of batch) if (recorded.has(r.id)) this.#o.onRecorded(r);
    }
  }

  /**
   * Records a batch in one statement. When Postgres refuses the data of some row (SQLSTATE class 22),
   * the rows are recorded one by one, so one bad row cannot keep the others from being recorded; a row
   * refused on its own is left to its lease (it is attempted again when the lease ends). Any other error
   * (e.g. a lost connection) is thrown, and the caller retries the whole batch.
   */
  async #record(batch: RecordedAttempt[]): Promise<Set<string>> {
    const windows = this.#o.windowsOf(new Set(batch.map((r) => r.endpoint)));
    try {
      return await recordAttempts(this.#o.pool, batch, windows);
    } catch (err) {
      if (!isDataException(err)) throw err;
      this.#o.log.warn(
        { err, n: batch.length },
        'webhook dispatcher: a batch of attempts holds data Postgres refuses; recording them one by one',
      );
    }
    const recorded = new Set<string>();
    for (const r of batch) {
      try {
        for (const id of await recordAttempts(this.#o.pool, [r], windows)) recorded.add(id);
      } catch (err) {
        if (!isDataException(err)) throw err;
        this.#o.log.error(
          { err, delivery: r.id },
          'webhook dispatcher: an attempt holds data Postgres refuses; it is not recorded and is attempted again after its lease',
        );
      }
    }
    return recorded;
  }
}
