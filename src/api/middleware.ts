/** Cross-cutting request handling: request ids and logs, JSON bodies, authentication. */
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { tenantByApiKey, type Tenant } from '../tenants/repository.ts';
import type { AppEnv } from './context.ts';
import type { JsonLimits } from '../config.ts';
import { ApiError, databaseUnavailable } from './errors.ts';
import { emptyBody, parseJson } from './json-body.ts';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** The request's id: the caller's `X-Request-Id` if sane, else a new one. */
export function requestIdOf(given: string | undefined): string {
  return given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Counts and times a finished request, and writes its log line (with `fields`, e.g. the request id, if `log` lacks them). */
export function observeRequest(
  log: Logger,
  metrics: Metrics,
  r: { method: string; route: string; path: string; status: number; startedMs: number },
  fields: Record<string, string> = {},
): void {
  const ms = performance.now() - r.startedMs;
  metrics.httpRequests.inc({ method: r.method, route: r.route, status: String(r.status) });
  metrics.httpDuration.observe({ method: r.method, route: r.route }, ms / 1000);
  log.info({ ...fields, method: r.method, path: r.path, status: r.status, ms: Math.round(ms * 10) / 10 }, 'request');
}

/**
 * The status the client was sent: past its request timeout Node answers 408 on the socket itself and
 * destroys it, whatever status the handler (which then sees a body cut short) goes on to choose.
 */
export function sentStatus(req: IncomingMessage | undefined, chosen: number): number {
  const err = req?.socket.errored as { code?: unknown } | null | undefined;
  return err?.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : chosen;
}

/** Gives every request an id (the caller's `X-Request-Id` if sane), a child logger, a log line and metrics. */
export function requestContext(log: Logger, metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const requestId = requestIdOf(c.req.header('x-request-id'));
    const reqLog = log.child({ request_id: requestId });
    c.set('requestId', requestId);
    c.set('log', reqLog);
    c.header('X-Request-Id', requestId);
    const startedMs = performance.now();
    await next();
    observeRequest(reqLog, metrics, {
      method: c.req.method,
      route: c.req.routePath,
      path: c.req.path,
      status: sentStatus(nodeIncoming(c), c.res.status),
      startedMs,
    });
  };
}

/** 503 at once while the database is known to be unreachable (every /v1 request needs it). */
export function failFastWithoutDatabase(
  database: { readonly connected: boolean } | undefined,
): MiddlewareHandler<AppEnv> {
  return async (_c, next) => {
    if (database?.connected === false) throw databaseUnavailable();
    await next();
  };
}

/** Whether a request URL holds an encoded NUL: no id, name or filter has one, and Postgres text cannot hold it. */
export function urlHasNul(url: string): boolean {
  return /%00/i.test(url);
}

/** 400 for a URL with an encoded NUL (%00) in its path or query, before anything reads it. */
export function refuseNulInUrl(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (urlHasNul(c.req.url)) throw new ApiError('bad-request', 'the URL contains an encoded NUL character (%00)');
    await next();
  };
}

/** Methods that never change state: their bodies, if any, are not read. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * For every request that may change state, reads and checks its whole body before any route runs, so
 * a refused request (truncated, over the limit, not JSON, past a JSON limit) changes nothing: 415 for
 * another content type, 413 over the byte limit, 400 for a body that is not JSON or did not arrive in
 * full, 422 past a JSON limit. A request without a body passes; routes that need one add requireJsonBody.
 * The text is left in Hono's body cache for the validator.
 */
export function readBody(limitBytes: number, limits: JsonLimits): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (SAFE_METHODS.has(c.req.method)) return next();
    const incoming = nodeIncoming(c);
    const length = c.req.header('content-length');
    const hasBody =
      incoming === undefined
        ? c.req.raw.body !== null
        : (length !== undefined && length !== '0') || c.req.header('transfer-encoding') !== undefined;
    c.set('hasBody', hasBody);
    if (!hasBody) return next();
    checkJsonHeaders(c.req.header('content-type'), length, limitBytes);
    // Under @hono/node-server, read Node's request stream itself: touching `c.req.raw.body` would build a
    // WHATWG Request and stream around it, which costs several times the rest of the request path.
    const text = await readLimited(incoming?.iterator({ destroyOnReturn: false }) ?? c.req.raw.body, limitBytes);
    const json = parseJson(text, limits);
    // Re-seat the consumed body so the validator reads it from Hono's cache (Hono caches the body promise
    // per format; its type says otherwise), and answer c.req.json() with the JSON parsed here: Hono's
    // would parse the text again.
    (c.req.bodyCache as Record<string, Promise<unknown>>).text = Promise.resolve(text);
    c.req.json = <T>() => Promise.resolve(json as T);
    return next();
  };
}

/** For routes whose JSON body is required: 415 unless one was declared JSON, 400 for an empty one. (readBody has checked any body sent.) */
export function requireJsonBody(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.get('hasBody') !== true) {
      checkJsonHeaders(c.req.header('content-type'), undefined, Infinity);
      throw emptyBody();
    }
    await next();
  };
}

/** What Hono's JSON validator reads as JSON (hono/validator's jsonRegex): `application/json` or `application/<one word>+json`. */
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/** 413 when Content-Length says the body is over the limit, 415 unless the body is declared JSON. */
export function checkJsonHeaders(
  contentType: string | undefined,
  contentLength: string | undefined,
  limitBytes: number,
): void {
  const type = contentType ?? '';
  const length = Number(contentLength ?? '0');
  if (length > limitBytes)
    throw new ApiError('payload-too-large', `the body is ${length} bytes; the limit is ${limitBytes}`);
  // The media type as Hono's JSON validator reads it (the Hono route and the submit lane must agree).
  if (!JSON_MEDIA_TYPE.test(type.split(';')[0]?.trim() ?? '')) {
    throw new ApiError(
      'unsupported-media-type',
      `send the body as application/json (got ${type === '' ? 'no Content-Type' : JSON.stringify(type)})`,
    );
  }
}

/** Reads a body as text, refusing more than `limit` bytes even when Content-Length was absent or false. */
export async function readLimited(body: AsyncIterable<Uint8Array> | null, limit: number): Promise<string> {
  if (body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > limit) throw new ApiError('payload-too-large', `the body exceeds the limit of ${limit} bytes`);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    // The client closed the connection, or Node's request timeout did, before the declared body arrived.
    throw new ApiError('bad-request', `the body ended after ${size} bytes, before all of it arrived`, { cause: err });
  }
  const only = chunks.length === 1 ? chunks[0] : undefined;
  return Buffer.isBuffer(only) ? only.toString('utf8') : Buffer.concat(chunks).toString('utf8');
}

/** Node's request under @hono/node-server (it passes `{ incoming, outgoing }` as the env), if there is one. */
function nodeIncoming(c: Context<AppEnv>): IncomingMessage | undefined {
  const incoming = (c.env as { incoming?: unknown } | undefined)?.incoming;
  return incoming instanceof IncomingMessage ? incoming : undefined;
}

function bearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** Most API keys remembered at once; past it the cache starts over (a burst of bad keys cannot grow it). */
const MAX_CACHED_KEYS = 10_000;

/**
 * API keys → tenants. Lookups are cached for a short time (LONGHAUL_AUTH_CACHE_SECONDS) so the
 * request path does not pay a query for it; a revoked key stops working within that time.
 */
export class ApiKeys {
  readonly #pool: Pool;
  readonly #cacheMs: number;
  readonly #cache = new Map<string, { tenant: Tenant | undefined; until: number }>();

  constructor(pool: Pool, cacheSeconds: number) {
    this.#pool = pool;
    this.#cacheMs = cacheSeconds * 1000;
  }

  /** The tenant an `Authorization` header names, or 401. */
  async tenantFor(authorization: string | undefined): Promise<Tenant> {
    const key = bearer(authorization);
    if (key === undefined) {
      throw new ApiError('unauthorized', 'send the API key as "Authorization: Bearer <key>"', {
        headers: { 'WWW-Authenticate': 'Bearer' },
      });
    }
    const now = Date.now();
    const cacheKey = createHash('sha256').update(key).digest('base64');
    let hit = this.#cache.get(cacheKey);
    if (hit === undefined || hit.until < now) {
      hit = { tenant: (await tenantByApiKey(this.#pool, key))?.tenant, until: now + this.#cacheMs };
      if (this.#cache.size >= MAX_CACHED_KEYS) this.#cache.clear();
      if (this.#cacheMs > 0) this.#cache.set(cacheKey, hit);
    }
    if (hit.tenant === undefined)
      throw new ApiError('unauthorized', 'the API key is not valid', {
        headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
      });
    return hit.tenant;
  }
}

/**
 * API-key authentication for the routes under a prefix. Requests for which `authenticatesItself` is
 * true (a stream token instead of the header) are left to their route, which must verify them. (Default: none)
 */
export function apiKeyAuth(
  keys: ApiKeys,
  exceptPrefix: string,
  authenticatesItself: (c: Context<AppEnv>) => boolean = () => false,
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.req.path.startsWith(exceptPrefix) || authenticatesItself(c)) return next();
    const tenant = await keys.tenantFor(c.req.header('authorization'));
    c.set('tenant', tenant);
    c.set('log', c.get('log').child({ tenant_id: tenant.id }));
    await next();
  };
}

/** The admin API exists only when LONGHAUL_ADMIN_TOKEN is set, and takes only that token. */
export function adminAuth(token: string | undefined): MiddlewareHandler<AppEnv> {
  const expected = token === undefined ? undefined : createHash('sha256').update(token).digest();
  return async (c, next) => {
    if (expected === undefined)
      throw new ApiError('admin-disabled', 'set LONGHAUL_ADMIN_TOKEN to enable the admin API');
    const given = bearer(c.req.header('authorization'));
    if (given === undefined || !timingSafeEqual(createHash('sha256').update(given).digest(), expected)) {
      throw new ApiError('unauthorized', 'the admin token is missing or wrong', {
        headers: { 'WWW-Authenticate': 'Bearer' },
      });
    }
    await next();
  };
}
