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
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.ts';
import type { PgListener } from '../db/listener.ts';
import { isConnectionError, isDataException, type Pool } from '../db/pool.ts';
import type { Alerts } from '../alerts/alerts.ts';
import type { Logger } from '../observability/logger.ts';
import type { Registry } from '../observability/metrics.ts';
import { webhookAttemptSpan } from '../observability/tracing.ts';
import type { CallbackAllowList } from './allowlist.ts';
import { closeBreaker, openBreaker, takeProbe } from './breaker.ts';
import { OutcomeWindow } from './breaker-window.ts';
import { webhookMetrics, type WebhookMetrics } from './metrics.ts';
import { WEBHOOKS_CHANNEL } from './outbox.ts';
import { nextDelaySeconds } from './schedule.ts';
import { WebhookSender, type AttemptResult } from './send.ts';
import { privateKeyOf, webhookHeaders, type Signer } from './sign.ts';
import {
  claimDeliveries,
  recordAttempts,
  releaseDeliveries,
  secondsUntilNextDue,
  type AttemptRecord,
  type ClaimedDelivery,
} from './store.ts';

/** Most deliveries claimed by one statement. */
const MAX_CLAIM_BATCH = 256;
/**
 * Deliveries kept claimed per slot (overall and per endpoint), in flight and buffered. Claims run one at
 * a time and their cost grows much less than their size (bench/RESULTS.md, Webhooks), so
 * claiming far ahead is what lets throughput follow the HTTP round trip instead of the claim statement. A buffered row is never started
 * late in its lease (see #startBy), so a deep buffer does not risk an unrecorded attempt.
 */
const CLAIM_AHEAD = 8;
/** Most attempts recorded by one statement. */
const MAX_RECORD_BATCH = 512;
/** Shortest wait before claiming again when the last claim found nothing (rows may be due but held). */
const IDLE_FLOOR_SECONDS = 0.05;
/** Wait before retrying a failed claim or record. */
const RETRY_MS = 1_000;

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

interface Recorded extends AttemptRecord {
  webhookId: string;
  jobId: string;
  tenantId: string;
  url: string;
  attempt: number;
  replayed: boolean;
}

/** A claimed delivery waiting for a slot; `claimedAt` (performance.now()) is taken before the claim statement. */
interface Ready {
  row: ClaimedDelivery;
  token: string;
  claimedAt: number;
}

function signerOf(row: ClaimedDelivery): Signer | undefined {
  if (row.scheme === 'v1a' && row.key_pems.length > 0) {
    return { scheme: 'v1a', keys: row.key_pems.map((pem, i) => privateKeyOf(row.key_ids[i] ?? String(i), pem)) };
  }
  if (row.secrets.length > 0) return { scheme: 'v1', secrets: row.secrets };
  return undefined;
}

export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #s: Config['webhooks'];
  readonly #sender: WebhookSender;
  readonly #metrics: WebhookMetrics;
  readonly #windows = new Map<string, OutcomeWindow>();
  /** In-flight deliveries: id → claim token. */
  readonly #inflight = new Map<string, string>();
  readonly #perEndpoint = new Map<string, number>();
  /**
   * Endpoints whose breaker this dispatcher knows is not closed (it or another dispatcher opened it, or
   * it is half-open): their buffered deliveries are given back, never started. Cleared when a claim
   * returns the endpoint closed or this dispatcher's probe closes it.
   */
  readonly #held = new Set<string>();
  /** Claimed deliveries waiting for a free slot (with those in flight, at most CLAIM_AHEAD concurrencies' worth). */
  #ready: Ready[] = [];
  #results: Recorded[] = [];
  #flushing: Promise<void> | undefined;
  /** The queue of alert raises and clears (see #alert). */
  #alerting: Promise<void> = Promise.resolve();
  #claiming = false;
  #again = false;
  #stopping = false;
  /** Set when stopping gave up waiting: results of attempts still running are dropped. */
  #abandoned = false;
  #timer: NodeJS.Timeout | undefined;
  #poller: NodeJS.Timeout | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #idleWaiters: Array<() => void> = [];
  /**
   * Milliseconds after its claim by which a buffered delivery must start: half the lease's spare over
   * one attempt's timeout, so the other half is left to record the result before the lease ends.
   * Later, it is given back instead (due now, nothing spent).
   */
  readonly #startBy: number;

  constructor(opts: DispatcherOptions) {
    this.#o = opts;
    this.#s = opts.settings;
    this.#sender = new WebhookSender({
      allow: opts.allow,
      timeoutSeconds: opts.settings.timeoutSeconds,
      connectTimeoutSeconds: opts.settings.connectTimeoutSeconds,
      connectionsPerEndpoint: opts.settings.endpointConcurrency,
    });
    this.#metrics = webhookMetrics(opts.registry);
    this.#startBy = ((opts.settings.leaseSeconds - opts.settings.timeoutSeconds) / 2) * 1000;
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#o.listener.subscribe([WEBHOOKS_CHANNEL], {
      onNotification: () => this.wake(),
      // Anything committed while the connection was down (or before LISTEN took effect) is found by this claim.
      onConnect: () => this.wake(),
    });
    this.#poller = setInterval(() => this.wake(), this.#s.pollSeconds * 1000);
    this.#poller.unref();
    this.wake();
  }

  /** Claims due deliveries now (called on NOTIFY, by the poller and when a slot frees up). */
  wake(): void {
    if (this.#stopping) return;
    void this.#pump();
  }

  /** Number of attempts in flight. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /**
   * Stops claiming, lets in-flight attempts finish (up to the drain time), records their results and
   * closes connections. Attempts still running after that are abandoned and their claims released, so
   * another dispatcher retries them without spending an attempt.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    clearInterval(this.#poller);
    await this.#unsubscribe?.();
    await this.#releaseReady().catch(() => undefined);
    if (this.#inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const drained = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
      const timeout = new Promise<void>(
        (resolve) => (timer = setTimeout(resolve, (this.#o.drainSeconds ?? 30) * 1000)),
      );
      await Promise.race([drained, timeout]);
      clearTimeout(timer);
    }
    if (this.#inflight.size > 0) {
      this.#abandoned = true;
      const byToken = new Map<string, string[]>();
      for (const [id, token] of this.#inflight) byToken.set(token, [...(byToken.get(token) ?? []), id]);
      // Their requests end before the rows go back: released first, another dispatcher could send one
      // again while this one's request is still being answered.
      await this.#sender.destroy().catch(() => undefined);
      for (const [token, ids] of byToken) await releaseDeliveries(this.#o.pool, ids, token).catch(() => undefined);
    }
    await this.#flushing;
    await this.#flush();
    // The alerts of what was recorded go out before the caller closes the pool.
    await this.#alerting;
    await this.#sender.close().catch(() => undefined);
  }

  #armTimer(seconds: number): void {
    if (this.#stopping) return;
    clearTimeout(this.#timer);
    const s = Math.min(Math.max(seconds, 0), this.#s.pollSeconds);
    this.#timer = setTimeout(() => this.wake(), s * 1000);
    this.#timer.unref();
  }

  async #pump(): Promise<void> {
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    this.#claiming = true;
    try {
      let lastClaimed = 0;
      let wanted = 0;
      do {
        this.#again = false;
        this.#startReady();
        // Keep deliveries claimed ahead, so finished slots refill without waiting for a claim.
        const buffered = this.#inflight.size + this.#ready.length;
        wanted = Math.min(CLAIM_AHEAD * this.#s.concurrency - buffered, MAX_CLAIM_BATCH);
        if (this.#stopping || wanted <= 0 || (buffered > 0 && wanted < Math.max(1, this.#s.concurrency / 4))) return;
        const token = randomUUID();
        const claimedAt = performance.now();
        const perEndpoint = CLAIM_AHEAD * this.#s.endpointConcurrency;
        const held = new Map<string, number>(this.#perEndpoint);
        for (const r of this.#ready) held.set(r.row.endpoint, (held.get(r.row.endpoint) ?? 0) + 1);
        const busy = new Map<string, number>();
        for (const [endpoint, n] of held) busy.set(endpoint, Math.max(0, perEndpoint - n));
        const rows = await claimDeliveries(this.#o.pool, {
          token,
          limit: wanted,
          perEndpoint,
          busy,
          leaseSeconds: this.#s.leaseSeconds,
        });
        lastClaimed = rows.length;
        await this.#startAll(rows, token, claimedAt);
        this.#startReady();
        if (rows.length >= wanted) this.#again = true;
      } while (this.#again && !this.#stopping);
      if (lastClaimed < wanted) {
        const due = await secondsUntilNextDue(this.#o.pool);
        if (due !== undefined) this.#armTimer(Math.max(due, lastClaimed === 0 ? IDLE_FLOOR_SECONDS : 0));
      }
    } catch (err) {
      // An outage is logged once, by the listener.
      if (!this.#stopping && !isConnectionError(err))
        this.#o.log.warn({ err }, 'webhook dispatcher: claiming deliveries failed');
      this.#armTimer(RETRY_MS / 1000);
    } finally {
      this.#claiming = false;
    }
  }

  /** Starts buffered deliveries while there are free slots, overall and for their endpoint. */
  #startReady(): void {
    if (this.#stopping) return;
    const late = performance.now() - this.#startBy;
    const stale: Ready[] = [];
    for (let i = 0; i < this.#ready.length && this.#inflight.size < this.#s.concurrency;) {
      const r = this.#ready[i];
      if (r !== undefined && r.claimedAt < late) {
        this.#ready.splice(i, 1);
        stale.push(r);
      } else if (
        r !== undefined &&
        !this.#held.has(r.row.endpoint) &&
        (this.#perEndpoint.get(r.row.endpoint) ?? 0) < this.#s.endpointConcurrency
      ) {
        this.#ready.splice(i, 1);
        this.#begin(r.row, r.token, false);
      } else i++;
    }
    if (stale.length > 0) {
      this.#metrics.givenBack.inc(stale.length);
      void this.#release(stale)
        .then(() => this.wake())
        .catch((err: unknown) =>
          this.#o.log.warn(
            { err },
            'webhook dispatcher: giving back deliveries buffered too long failed; their leases will expire',
          ),
        );
    }
  }

  /** Gives back claimed deliveries not started (due now, nothing spent). */
  async #release(ready: Ready[]): Promise<void> {
    const byToken = new Map<string, string[]>();
    for (const r of ready) byToken.set(r.token, [...(byToken.get(r.token) ?? []), r.row.id]);
    for (const [token, ids] of byToken) await releaseDeliveries(this.#o.pool, ids, token);
  }

  /** Gives back buffered deliveries not yet started (of one endpoint, or all), due now and unspent. */
  async #releaseReady(endpoint?: string): Promise<void> {
    const keep: Ready[] = [];
    const give: Ready[] = [];
    for (const r of this.#ready) (endpoint !== undefined && r.row.endpoint !== endpoint ? keep : give).push(r);
    this.#ready = keep;
    await this.#release(give);
  }

  /** Starts the claimed deliveries; an endpoint whose breaker is not closed gets one probe, the rest go back. */
  async #startAll(rows: ClaimedDelivery[], token: string, claimedAt: number): Promise<void> {
    const probing = new Map<string, ClaimedDelivery[]>();
    for (const row of rows) {
      if (row.endpoint_state === null || row.endpoint_state === 'closed') {
        this.#held.delete(row.endpoint);
        this.#ready.push({ row, token, claimedAt });
      } else probing.set(row.endpoint, [...(probing.get(row.endpoint) ?? []), row]);
    }
    for (const [endpoint, group] of probing) {
      this.#held.add(endpoint);
      const won = await takeProbe(this.#o.pool, endpoint, this.#s.leaseSeconds);
      const [probe, ...rest] = group;
      if (won && probe !== undefined) {
        this.#o.log.info({ endpoint }, 'webhook circuit breaker half-open: sending one probe');
        this.#begin(probe, token, true);
        await this.#releaseReady(endpoint);
        await releaseDeliveries(
          this.#o.pool,
          rest.map((r) => r.id),
          token,
        );
      } else {
        await this.#releaseReady(endpoint);
        await releaseDeliveries(
          this.#o.pool,
          group.map((r) => r.id),
          token,
        );
      }
    }
  }

  #begin(row: ClaimedDelivery, token: string, probe: boolean): void {
    this.#inflight.set(row.id, token);
    this.#perEndpoint.set(row.endpoint, (this.#perEndpoint.get(row.endpoint) ?? 0) + 1);
    this.#attempt(row, token, probe)
      .catch((err: unknown) =>
        this.#o.log.error({ err, delivery: row.id }, 'webhook dispatcher: attempt failed unexpectedly'),
      )
      .finally(() => {
        this.#inflight.delete(row.id);
        const left = (this.#perEndpoint.get(row.endpoint) ?? 1) - 1;
        if (left <= 0) this.#perEndpoint.delete(row.endpoint);
        else this.#perEndpoint.set(row.endpoint, left);
        if (this.#inflight.size === 0) for (const w of this.#idleWaiters.splice(0)) w();
        this.#startReady();
        this.wake();
      });
  }

  async #attempt(row: ClaimedDelivery, token: string, probe: boolean): Promise<void> {
    const startedAt = new Date();
    if (row.attempts_made === 0 && !row.replayed)
      this.#metrics.firstAttemptLag.observe(Math.max(0, startedAt.getTime() - row.created_at.getTime()) / 1000);
    const signer = signerOf(row);
    const result: AttemptResult =
      signer === undefined
        ? {
            kind: 'failed',
            statusCode: null,
            error: 'the tenant has no active webhook secret or signing key',
            response: null,
            durationMs: 0,
            retryAfterSeconds: undefined,
          }
        : await webhookAttemptSpan(
            row.trace_context,
            { url: row.url, deliveryId: row.id, attempt: row.attempts_made + 1 },
            (traceHeaders) =>
              this.#sender.send(
                row.url,
                {
                  ...traceHeaders,
                  ...webhookHeaders(signer, row.webhook_id, Math.floor(Date.now() / 1000), row.payload),
                },
                row.payload,
              ),
          );
    if (this.#abandoned) return;
    const attempt = row.attempts_made + 1;
    const ok = result.kind === 'success';
    let status: AttemptRecord['status'] = 'SUCCEEDED';
    let delaySeconds = 0;
    if (result.kind === 'refused') status = 'DEAD';
    else if (result.kind === 'gone') {
      // 410 disables the tenant's endpoint (recorded with this attempt) until it is enabled again; this
      // delivery and the endpoint's others wait, unspent, and go out once it is. Nothing buffered here starts.
      status = 'PENDING';
      this.#held.add(row.endpoint);
      await this.#releaseReady(row.endpoint).catch((err: unknown) =>
        this.#o.log.warn({ err }, 'webhook dispatcher: giving back deliveries of a disabled endpoint failed'),
      );
      this.#o.log.warn(
        { endpoint: row.endpoint, tenant_id: row.tenant_id },
        'webhook endpoint answered 410 Gone: disabled until enabled again',
      );
    } else if (!ok) {
      const delay = nextDelaySeconds(this.#s, {
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
    this.#metrics.attempts.inc({ outcome: result.kind });
    this.#metrics.attemptDuration.observe(result.durationMs / 1000);
    // Only a request that went out says something about the endpoint: a refused URL, or a tenant without
    // a secret (a misconfiguration of one tenant), must not open the breaker of an endpoint others share.
    const counts = result.kind !== 'refused' && signer !== undefined;
    if (counts) await this.#breaker(row.endpoint, ok, probe);
    this.#results.push({
      id: row.id,
      token,
      endpoint: row.endpoint,
      status,
      delaySeconds,
      startedAt,
      durationMs: result.durationMs,
      statusCode: result.statusCode,
      error: result.error,
      response: result.response,
      countsForEndpoint: counts,
      ok,
      gone: result.kind === 'gone',
      webhookId: row.webhook_id,
      jobId: row.job_id,
      tenantId: row.tenant_id,
      url: row.url,
      attempt,
      replayed: row.replayed,
    });
    this.#kickFlush();
  }

  #kickFlush(): void {
    if (this.#flushing !== undefined) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#results.length > 0) this.#kickFlush();
    });
  }

  async #breaker(endpoint: string, ok: boolean, probe: boolean): Promise<void> {
    let window = this.#windows.get(endpoint);
    if (window === undefined) this.#windows.set(endpoint, (window = new OutcomeWindow(this.#s.breaker.window)));
    window.record(ok);
    const pool = this.#o.pool;
    try {
      if (probe && ok) {
        await closeBreaker(pool, endpoint);
        this.#held.delete(endpoint);
        window.reset();
        this.#o.log.info({ endpoint }, 'webhook circuit breaker closed: the probe succeeded');
      } else if (probe) {
        await openBreaker(pool, endpoint, this.#s.breaker.cooldownSeconds, ['half_open', 'open']);
        await this.#releaseReady(endpoint);
        this.#o.log.warn({ endpoint }, 'webhook circuit breaker stays open: the probe failed');
      } else if (!ok && window.shouldOpen(this.#s.breaker)) {
        const counts = { total: window.total, failures: window.failures };
        window.reset();
        // Opened here or already by another dispatcher: either way, nothing buffered for it starts, even
        // while openBreaker runs, and all of it goes back. Marked again after it: a claim that ran
        // meanwhile may have seen the endpoint still closed.
        this.#held.add(endpoint);
        const opened = await openBreaker(pool, endpoint, this.#s.breaker.cooldownSeconds);
        this.#held.add(endpoint);
        await this.#releaseReady(endpoint);
        if (opened)
          this.#o.log.warn(
            { endpoint, ...counts, cooldown_seconds: this.#s.breaker.cooldownSeconds },
            'webhook circuit breaker opened',
          );
      }
    } catch (err) {
      this.#o.log.warn({ err, endpoint }, 'webhook dispatcher: updating the circuit breaker failed');
    }
  }

  /** Records results in batches until none are left (group commit: results that arrive meanwhile go in the next batch). */
  async #flush(): Promise<void> {
    while (this.#results.length > 0) {
      const batch = this.#results.splice(0, MAX_RECORD_BATCH);
      let recorded: Set<string>;
      try {
        recorded = await this.#record(batch);
      } catch (err) {
        if (this.#stopping) {
          this.#o.log.error(
            { err, n: batch.length },
            'webhook dispatcher: could not record attempts while stopping; their leases will expire and they are retried',
          );
          return;
        }
        if (!isConnectionError(err))
          this.#o.log.warn({ err }, 'webhook dispatcher: recording attempts failed; retrying');
        this.#results.unshift(...batch);
        await new Promise((r) => setTimeout(r, RETRY_MS));
        continue;
      }
      for (const r of batch) {
        if (!recorded.has(r.id)) continue;
        if (r.status === 'DEAD') this.#dead(r);
        else if (r.status === 'SUCCEEDED' && r.replayed)
          this.#alert('clearing the dead-delivery alert', (alerts) => alerts.clear(`delivery-dead:${r.id}`));
      }
    }
  }

  /**
   * Records a batch in one statement. When Postgres refuses the data of some row (SQLSTATE class 22),
   * the rows are recorded one by one, so one bad row cannot keep the others from being recorded; a row
   * refused on its own is left to its lease (it is attempted again when the lease ends). Any other error
   * (e.g. a lost connection) is thrown, and the caller retries the whole batch.
   */
  async #record(batch: Recorded[]): Promise<Set<string>> {
    const windows = new Map<string, { total: number; failures: number }>();
    for (const r of batch) {
      const w = this.#windows.get(r.endpoint);
      if (w !== undefined) windows.set(r.endpoint, { total: w.total, failures: w.failures });
    }
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

  #dead(r: Recorded): void {
    this.#metrics.dead.inc();
    this.#o.log.warn(
      {
        delivery: r.id,
        webhook_id: r.webhookId,
        job_id: r.jobId,
        endpoint: r.endpoint,
        attempts: r.attempt,
        error: r.error,
      },
      'webhook delivery DEAD',
    );
    this.#alert('raising the dead-delivery alert', (alerts) =>
      alerts.raise(`delivery-dead:${r.id}`, {
        kind: 'delivery-dead',
        message: `webhook delivery ${r.webhookId} of job ${r.jobId} to ${r.endpoint} is DEAD after ${r.attempt} attempt(s): ${r.error ?? 'failed'}`,
        details: {
          delivery_id: r.id,
          webhook_id: r.webhookId,
          job_id: r.jobId,
          tenant_id: r.tenantId,
          endpoint: r.endpoint,
          attempts: r.attempt,
          error: r.error,
          status_code: r.statusCode,
        },
      }),
    );
  }

  /**
   * Queues an alert raise or clear behind the earlier ones. Recording never waits for it: an alert's
   * sinks call the network (up to 10 s each), and results waiting that long to be recorded would
   * outlive their leases and be sent again. One at a time and in order, so a clear never overtakes
   * its raise and a burst of dead deliveries does not flood the sinks or the pool.
   */
  #alert(what: string, send: (alerts: Alerts) => Promise<boolean>): void {
    const alerts = this.#o.alerts;
    if (alerts === undefined) return;
    this.#alerting = this.#alerting
      .then(() => send(alerts))
      .then(
        () => undefined,
        (err: unknown) => this.#o.log.warn({ err }, `webhook dispatcher: ${what} failed`),
      );
  }
}
