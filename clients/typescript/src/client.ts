/**
 * The longhaul client: typed calls over openapi-fetch, plus what a partner would otherwise write by
 * hand: idempotent submission with safe retries, paging as async iterators, following a job's event
 * stream with resume (falling back to polling), and webhook verification.
 */
import createClient, { type Client } from 'openapi-fetch';
import { LonghaulError } from './errors.ts';
import type { components, paths } from './openapi.ts';
import { DEFAULT_RETRY, retryingFetch, sleep, type Fetch, type RetryOptions } from './retry.ts';
import { endsStream, isTerminal, sseMessages, type StreamMessage } from './stream.ts';
import { WebhookVerifier, type HeadersLike, type WebhookEvent } from './webhooks.ts';

type Schemas = components['schemas'];
export type Job = Schemas['Job'];
export type CreateJob = Schemas['CreateJob'];
/** A job of a type this package's types do not name (one your deployment added): its input is not checked here. */
export interface UntypedJob {
  type: string;
  input: unknown;
  callback_url?: string;
  metadata?: Record<string, unknown>;
}
export type RetryJob = Schemas['RetryJob'];
export type DeadLetter = Schemas['DeadLetter'];
export type ReplayDeadLetters = Schemas['ReplayDeadLetters'];
export type ReplayResult = Schemas['ReplayResult'];
export type Delivery = Schemas['Delivery'];
export type ListJobsQuery = Omit<NonNullable<paths['/v1/jobs']['get']['parameters']['query']>, 'cursor'>;
export type ListDeadLettersQuery = Omit<NonNullable<paths['/v1/dead-letters']['get']['parameters']['query']>, 'cursor'>;
export type ListDeliveriesQuery = Omit<NonNullable<paths['/v1/deliveries']['get']['parameters']['query']>, 'cursor'>;

export interface LonghaulOptions {
  /** The service's base URL, e.g. `https://longhaul.example.com`. */
  url: string;
  /** The tenant's API key (`lh_…`). */
  apiKey: string;
  /** The tenant's `whsec_` secret(s), for `webhooks.verify` of v1 signatures. */
  webhookSecret?: string | string[];
  /** Retries of safe requests (reads, and submissions under their Idempotency-Key). */
  retry?: Partial<RetryOptions>;
  /** How often `watch` and `wait` poll when the event stream is unavailable. (Default: 1000 ms) */
  pollIntervalMs?: number;
  /** A fetch to use instead of the global one. */
  fetch?: Fetch;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface SubmitOptions extends CallOptions {
  /** The Idempotency-Key; one is made (a random UUID) when not given, so retries cannot submit twice. */
  idempotencyKey?: string;
}

export interface WatchOptions extends CallOptions {
  /** Resume after this sequence number (the `seq` of the last message seen). */
  after?: number;
}

export interface WaitOptions extends CallOptions {
  /** Give up after this many milliseconds (the promise rejects with a `TimeoutError`). */
  timeout?: number;
}

/** The data of a successful openapi-fetch answer, or the LonghaulError of an unsuccessful one. */
function unwrap<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.response.ok && r.data !== undefined) return r.data;
  throw LonghaulError.of(r.response, r.error);
}

/** Every item of every page, fetching the next page only when the caller gets there. */
async function* pages<T>(
  page: (cursor: string | undefined) => Promise<{ data: T[]; next_cursor: string | null }>,
): AsyncGenerator<T> {
  let cursor: string | undefined;
  do {
    const p = await page(cursor);
    yield* p.data;
    cursor = p.next_cursor ?? undefined;
  } while (cursor !== undefined);
}

export class Longhaul {
  /** The typed openapi-fetch client, for any operation the helpers below do not cover. */
  readonly api: Client<paths>;
  readonly jobs: Jobs;
  readonly deadLetters: DeadLetters;
  readonly deliveries: Deliveries;
  readonly webhooks: { verify(rawBody: string | Uint8Array, headers: HeadersLike): Promise<WebhookEvent> };

  constructor(opts: LonghaulOptions) {
    const baseUrl = opts.url.replace(/\/+$/, '');
    const base: Fetch = opts.fetch ?? ((request) => fetch(request));
    const retry = { ...DEFAULT_RETRY, ...opts.retry };
    const headers = { Authorization: `Bearer ${opts.apiKey}` };
    this.api = createClient<paths>({ baseUrl, headers, fetch: base });
    const safe = createClient<paths>({ baseUrl, headers, fetch: retryingFetch(base, retry) });
    const ctx: Ctx = { baseUrl, headers, base, api: this.api, safe, pollIntervalMs: opts.pollIntervalMs ?? 1000 };
    this.jobs = new Jobs(ctx);
    this.deadLetters = new DeadLetters(ctx);
    this.deliveries = new Deliveries(ctx);
    const verifier = new WebhookVerifier({
      ...(opts.webhookSecret === undefined ? {} : { secrets: opts.webhookSecret }),
      jwksUrl: `${baseUrl}/.well-known/jwks.json`,
      fetch: (input, init) => base(new Request(input, init)),
    });
    this.webhooks = { verify: (rawBody, h) => verifier.verify(rawBody, h) };
  }
}

interface Ctx {
  baseUrl: string;
  headers: Record<string, string>;
  base: Fetch;
  /** Requests sent once. */
  api: Client<paths>;
  /** Requests retried (safe to repeat). */
  safe: Client<paths>;
  pollIntervalMs: number;
}

class Jobs {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Submits a job (202: it is PENDING). Retried on network errors, 5xx and 429 under one Idempotency-Key. */
  async submit(job: CreateJob, opts: SubmitOptions = {}): Promise<Job> {
    return this.submitUntyped(job, opts);
  }

  /** `submit` for a job type the generated types do not know (a job type of your deployment's own). */
  async submitUntyped(job: UntypedJob, opts: SubmitOptions = {}): Promise<Job> {
    const key = opts.idempotencyKey ?? crypto.randomUUID();
    return unwrap(
      await this.#c.safe.POST('/v1/jobs', {
        params: { header: { 'idempotency-key': key } },
        // The server checks the input against the type's schema.
        body: job as CreateJob,
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      }),
    );
  }

  async get(id: string, opts: CallOptions = {}): Promise<Job> {
    return unwrap(await this.#c.safe.GET('/v1/jobs/{id}', { params: { path: { id } }, signal: opts.signal }));
  }

  /** Every job matching `query`, newest first, across all pages. */
  list(query: ListJobsQuery = {}, opts: CallOptions = {}): AsyncGenerator<Job> {
    return pages(async (cursor) =>
      unwrap(await this.#c.safe.GET('/v1/jobs', { params: { query: { ...query, cursor } }, signal: opts.signal })),
    );
  }

  /** Cancels a job: a PENDING one at once, a RUNNING one at its next chunk boundary. */
  async cancel(id: string, opts: CallOptions = {}): Promise<Job> {
    return unwrap(await this.#c.api.POST('/v1/jobs/{id}/cancel', { params: { path: { id } }, signal: opts.signal }));
  }

  /** Runs a FAILED job again, from its last checkpoint (default) or from the start. */
  async retry(id: string, body: RetryJob = {}, opts: CallOptions = {}): Promise<Job> {
    return unwrap(
      await this.#c.api.POST('/v1/jobs/{id}/retry', { params: { path: { id } }, body, signal: opts.signal }),
    );
  }

  /**
   * The job's events as they happen: a `snapshot` first, then `progress` and `status` messages, ending
   * after the terminal status. A dropped stream is resumed after the last sequence number seen; when the
   * stream is unavailable (5xx, 406 from a proxy, repeated network errors), the job is polled instead and
   * each change is yielded as a `snapshot`.
   */
  async *watch(id: string, opts: WatchOptions = {}): AsyncGenerator<StreamMessage> {
    let after = opts.after;
    let failures = 0;
    for (;;) {
      const url = `${this.#c.baseUrl}/v1/jobs/${encodeURIComponent(id)}/events${after === undefined ? '' : `?after=${after}`}`;
      let res: Response;
      try {
        res = await this.#c.base(
          new Request(url, {
            headers: { ...this.#c.headers, Accept: 'text/event-stream' },
            ...(opts.signal === undefined ? {} : { signal: opts.signal }),
          }),
        );
      } catch (err) {
        if (opts.signal?.aborted === true || ++failures > 2) {
          if (opts.signal?.aborted === true) throw err;
          yield* this.#poll(id, after ?? 0, opts.signal);
          return;
        }
        await sleep(this.#c.pollIntervalMs, opts.signal);
        continue;
      }
      if (res.status === 204) return;
      if (res.status >= 500 || res.status === 406 || res.body === null) {
        await res.body?.cancel();
        yield* this.#poll(id, after ?? 0, opts.signal);
        return;
      }
      if (!res.ok) throw await LonghaulError.from(res);
      failures = 0;
      try {
        for await (const m of sseMessages(res.body)) {
          after = m.seq;
          yield m;
          if (endsStream(m)) return;
        }
      } catch (err) {
        if (opts.signal?.aborted === true) throw err;
        // The connection dropped mid-stream: resume after the last message seen.
      }
    }
  }

  async *#poll(id: string, seq: number, signal: AbortSignal | undefined): AsyncGenerator<StreamMessage> {
    let last = '';
    for (;;) {
      const job = await this.get(id, signal === undefined ? {} : { signal });
      const seen = `${job.status}|${job.progress.processed}|${job.updated_at}`;
      if (seen !== last) {
        last = seen;
        yield { type: 'snapshot', seq, job };
      }
      if (isTerminal(job.status)) return;
      await sleep(this.#c.pollIntervalMs, signal);
    }
  }

  /** Resolves with the job once it is COMPLETED, FAILED or CANCELLED (it does not throw for FAILED). */
  async wait(id: string, opts: WaitOptions = {}): Promise<Job> {
    const signals = [opts.signal, opts.timeout === undefined ? undefined : AbortSignal.timeout(opts.timeout)].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    const signal = signals.length === 0 ? undefined : AbortSignal.any(signals);
    const call = signal === undefined ? {} : { signal };
    for await (const m of this.watch(id, call)) if (endsStream(m)) break;
    return this.get(id, call);
  }
}

class DeadLetters {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Every dead-lettered job matching `query`, across all pages. */
  list(query: ListDeadLettersQuery = {}, opts: CallOptions = {}): AsyncGenerator<DeadLetter> {
    return pages(async (cursor) =>
      unwrap(
        await this.#c.safe.GET('/v1/dead-letters', { params: { query: { ...query, cursor } }, signal: opts.signal }),
      ),
    );
  }

  /** Retries the dead-lettered jobs the filter selects. */
  async replay(body: ReplayDeadLetters = {}, opts: CallOptions = {}): Promise<ReplayResult> {
    return unwrap(await this.#c.api.POST('/v1/dead-letters/replay', { body, signal: opts.signal }));
  }
}

class Deliveries {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Every webhook delivery matching `query`, newest first, across all pages. */
  list(query: ListDeliveriesQuery = {}, opts: CallOptions = {}): AsyncGenerator<Delivery> {
    return pages(async (cursor) =>
      unwrap(
        await this.#c.safe.GET('/v1/deliveries', { params: { query: { ...query, cursor } }, signal: opts.signal }),
      ),
    );
  }

  /** Sends one delivery's event again (a new delivery with the same webhook-id). */
  async redeliver(id: string, opts: CallOptions = {}): Promise<Delivery> {
    return unwrap(
      await this.#c.api.POST('/v1/deliveries/{id}/redeliver', { params: { path: { id } }, signal: opts.signal }),
    );
  }
}

export type { Jobs, DeadLetters, Deliveries };
