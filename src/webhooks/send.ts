/**
 * One HTTP attempt of a delivery, with undici: pooled keep-alive connections per endpoint, a connect
 * timeout, a total timeout, no redirects (a 3xx is a failure), the response body read up to a cap, and
 * the SSRF guard on the address actually connected to.
 */
import { isIP } from 'node:net';
import { Agent } from 'undici';
import { callbackUrlProblem, type CallbackAllowList } from './allowlist.ts';
import { addressProblem, guardedLookup } from './ssrf.ts';
import { parseRetryAfter } from './schedule.ts';

/** How much of a response body is kept in the attempt log. */
export const STORED_RESPONSE_BYTES = 4 * 1024;
/**
 * How much of a response body is read at most. A body up to this size is drained so the connection
 * can be reused; a longer one is cut off (its connection closed) so a huge answer costs nothing.
 */
const READ_RESPONSE_BYTES = 64 * 1024;
/**
 * Answers that mean "slow down" in Standard Webhooks: too many requests, and a gateway in front of the
 * receiver that got no (or no good) answer from it, i.e. an overloaded receiver rather than a broken one.
 * Other 5xx are retried on the plain schedule.
 */
const THROTTLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 504]);
/** Idle keep-alive connections are closed after this long. */
const KEEP_ALIVE_MS = 30_000;

/**
 * What an attempt came to. `gone`: 410, stop and flag the endpoint. `refused`: the URL or its address is
 * not allowed, a permanent failure. `throttled`: the receiver asked us to slow down, retried after at least
 * the throttle floor: a timeout, or a status Standard Webhooks lists as "slow down" (THROTTLE_STATUSES).
 */
export type AttemptKind = 'success' | 'failed' | 'throttled' | 'gone' | 'refused';

export interface AttemptResult {
  kind: AttemptKind;
  statusCode: number | null;
  error: string | null;
  /** Start of the response body (at most STORED_RESPONSE_BYTES, as UTF-8 text, U+0000 replaced by U+FFFD). */
  response: string | null;
  durationMs: number;
  retryAfterSeconds: number | undefined;
}

export interface SenderOptions {
  allow: CallbackAllowList;
  /** Whole attempt, from connect to the end of the response, in seconds. (Default: 15) */
  timeoutSeconds: number;
  /** TCP + TLS connect, in seconds. (Default: 5) */
  connectTimeoutSeconds: number;
  /** Connections kept per endpoint. (Default: 8) */
  connectionsPerEndpoint: number;
}

function errorText(err: unknown): { text: string; timeout: boolean; refused: boolean } {
  const e = err as { name?: string; code?: string; message?: string; cause?: unknown };
  if (e.name === 'SsrfRefusedError' || e.code === 'ERR_SSRF_REFUSED')
    return { text: e.message ?? 'refused', timeout: false, refused: true };
  const cause = e.cause as { name?: string; code?: string } | undefined;
  if (cause?.name === 'SsrfRefusedError') return errorText(cause);
  const timeout =
    e.name === 'TimeoutError' ||
    e.code === 'UND_ERR_CONNECT_TIMEOUT' ||
    e.code === 'UND_ERR_HEADERS_TIMEOUT' ||
    e.code === 'UND_ERR_BODY_TIMEOUT' ||
    cause?.name === 'TimeoutError';
  const text = timeout
    ? `timeout: ${e.message ?? 'no answer in time'}`
    : `${e.code ?? e.name ?? 'Error'}: ${e.message ?? String(err)}`;
  return { text, timeout, refused: false };
}

export class WebhookSender {
  readonly #agent: Agent;
  readonly #allow: CallbackAllowList;
  readonly #timeoutMs: number;

  constructor(opts: SenderOptions) {
    this.#allow = opts.allow;
    this.#timeoutMs = opts.timeoutSeconds * 1000;
    this.#agent = new Agent({
      connections: opts.connectionsPerEndpoint,
      keepAliveTimeout: KEEP_ALIVE_MS,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      connect: { timeout: opts.connectTimeoutSeconds * 1000, lookup: guardedLookup(opts.allow) },
    });
  }

  /** Why this URL may not be called at all (scheme, credentials, a literal forbidden address), if so. */
  refusal(url: string): string | undefined {
    const problem = callbackUrlProblem(url, this.#allow);
    if (problem !== undefined) return `callback_url ${problem}`;
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    // A literal address is not looked up, so the connect-time guard does not see it: check it here.
    if (isIP(host) !== 0) return addressProblem(host, this.#allow);
    return undefined;
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<AttemptResult> {
    const started = performance.now();
    const done = (r: Omit<AttemptResult, 'durationMs'>): AttemptResult => ({
      ...r,
      error: storable(r.error),
      response: storable(r.response),
      durationMs: Math.round(performance.now() - started),
    });
    const refused = this.refusal(url);
    if (refused !== undefined)
      return done({
        kind: 'refused',
        statusCode: null,
        error: `refused: ${refused}`,
        response: null,
        retryAfterSeconds: undefined,
      });
    const target = new URL(url);
    try {
      const res = await this.#agent.request({
        origin: target.origin,
        path: target.pathname + target.search,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'longhaul-webhooks/1', ...headers },
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= READ_RESPONSE_BYTES) {
          res.body.destroy();
          break;
        }
      }
      const response = Buffer.concat(chunks).subarray(0, STORED_RESPONSE_BYTES).toString('utf8');
      const code = res.statusCode;
      const retryAfter = parseRetryAfter(headerValue(res.headers['retry-after']));
      if (code >= 200 && code < 300)
        return done({ kind: 'success', statusCode: code, error: null, response, retryAfterSeconds: undefined });
      if (code === 410)
        return done({
          kind: 'gone',
          statusCode: code,
          error: '410 Gone: the endpoint asked to stop',
          response,
          retryAfterSeconds: undefined,
        });
      const error = code >= 300 && code < 400 ? `redirect ${code} (redirects are not followed)` : `HTTP ${code}`;
      return done({
        kind: THROTTLE_STATUSES.has(code) ? 'throttled' : 'failed',
        statusCode: code,
        error,
        response,
        retryAfterSeconds: retryAfter,
      });
    } catch (err) {
      const { text, timeout, refused: ssrf } = errorText(err);
      return done({
        kind: ssrf ? 'refused' : timeout ? 'throttled' : 'failed',
        statusCode: null,
        error: text,
        response: null,
        retryAfterSeconds: undefined,
      });
    }
  }

  close(): Promise<void> {
    return this.#agent.close();
  }

  /** Drops open connections at once (used when stopping without waiting). */
  destroy(): Promise<void> {
    return this.#agent.destroy();
  }
}

/**
 * The text with every U+0000 replaced by U+FFFD: a receiver's answer (or an error quoting it) may hold NUL
 * bytes, and Postgres text cannot, so an unreplaced one would make the attempt impossible to record.
 */
function storable(text: string | null): string | null {
  return text?.replaceAll('\u0000', '\uFFFD') ?? null;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
