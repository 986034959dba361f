/** Cross-cutting request handling: request ids and logs, JSON bodies, authentication. */
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { tenantByApiKey, type Tenant } from '../tenants/repository.ts';
import type { AppEnv } from './context.ts';
import { ApiError } from './errors.ts';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Gives every request an id (the caller's `X-Request-Id` if sane), a child logger, a log line and metrics. */
export function requestContext(log: Logger, metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const given = c.req.header('x-request-id');
    const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
    const reqLog = log.child({ request_id: requestId });
    c.set('requestId', requestId);
    c.set('log', reqLog);
    c.header('X-Request-Id', requestId);
    const started = performance.now();
    await next();
    const ms = performance.now() - started;
    const route = c.req.routePath;
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
    metrics.httpDuration.observe({ method: c.req.method, route }, ms / 1000);
    reqLog.info({ method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(ms * 10) / 10 }, 'request');
  };
}

/**
 * For POST routes with a JSON body: 415 for another content type, 413 over the limit, 400 for a
 * body that is not JSON. The parsed body is left in Hono's body cache for the validator.
 */
export function jsonBody(limitBytes: number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const type = c.req.header('content-type') ?? '';
    const length = Number(c.req.header('content-length') ?? '0');
    if (length > limitBytes) throw new ApiError('payload-too-large', `the body is ${length} bytes; the limit is ${limitBytes}`);
    if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
      throw new ApiError('unsupported-media-type', `send the body as application/json (got ${type === '' ? 'no Content-Type' : JSON.stringify(type)})`);
    }
    const text = await readLimited(c, limitBytes);
    try {
      JSON.parse(text);
    } catch (err) {
      throw new ApiError('malformed-json', `the body is not valid JSON: ${(err as Error).message}`);
    }
    await next();
  };
}

/** Reads the body as text, refusing more than `limit` bytes even when Content-Length was absent or false. */
async function readLimited(c: Context<AppEnv>, limit: number): Promise<string> {
  // Under @hono/node-server, read Node's request stream itself: touching `c.req.raw.body` would build a
  // WHATWG Request and stream around it, which costs several times the rest of the request path.
  const incoming = nodeIncoming(c);
  const body = incoming?.iterator({ destroyOnReturn: false }) ?? c.req.raw.body;
  if (body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > limit) throw new ApiError('payload-too-large', `the body exceeds the limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  const only = chunks.length === 1 ? chunks[0] : undefined;
  const text = Buffer.isBuffer(only) ? only.toString('utf8') : Buffer.concat(chunks).toString('utf8');
  // Re-seat the consumed body so the validator (c.req.json()) reads it from Hono's cache.
  // Hono caches the body promise per format (its type says otherwise).
  (c.req.bodyCache as Record<string, Promise<unknown>>).text = Promise.resolve(text);
  return text;
}

/** Node's request under @hono/node-server (it passes `{ incoming, outgoing }` as the env), if there is one. */
function nodeIncoming(c: Context<AppEnv>): IncomingMessage | undefined {
  const incoming = (c.env as { incoming?: unknown } | undefined)?.incoming;
  return incoming instanceof IncomingMessage ? incoming : undefined;
}

function bearer(c: Context): string | undefined {
  const h = c.req.header('authorization');
  if (h === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/**
 * API-key authentication. Lookups are cached for a short time (LONGHAUL_AUTH_CACHE_SECONDS) so the
 * request path does not pay a query for it; a revoked key stops working within that time.
 * Requests for which `authenticatesItself` is true (a stream token instead of the header) are left to
 * their route, which must verify them. (Default: none)
 */
export function apiKeyAuth(
  pool: Pool,
  cacheSeconds: number,
  exceptPrefix: string,
  authenticatesItself: (c: Context<AppEnv>) => boolean = () => false,
): MiddlewareHandler<AppEnv> {
  const cache = new Map<string, { tenant: Tenant | undefined; until: number }>();
  const MAX_CACHED = 10_000;
  return async (c, next) => {
    if (c.req.path.startsWith(exceptPrefix) || authenticatesItself(c)) return next();
    const key = bearer(c);
    if (key === undefined) {
      throw new ApiError('unauthorized', 'send the API key as "Authorization: Bearer <key>"', { headers: { 'WWW-Authenticate': 'Bearer' } });
    }
    const now = Date.now();
    const cacheKey = createHash('sha256').update(key).digest('base64');
    let hit = cache.get(cacheKey);
    if (hit === undefined || hit.until < now) {
      hit = { tenant: await tenantByApiKey(pool, key), until: now + cacheSeconds * 1000 };
      if (cache.size >= MAX_CACHED) cache.clear();
      if (cacheSeconds > 0) cache.set(cacheKey, hit);
    }
    if (hit.tenant === undefined) throw new ApiError('unauthorized', 'the API key is not valid', { headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } });
    c.set('tenant', hit.tenant);
    c.set('log', c.get('log').child({ tenant_id: hit.tenant.id }));
    await next();
  };
}

/** The admin API exists only when LONGHAUL_ADMIN_TOKEN is set, and takes only that token. */
export function adminAuth(token: string | undefined): MiddlewareHandler<AppEnv> {
  const expected = token === undefined ? undefined : createHash('sha256').update(token).digest();
  return async (c, next) => {
    if (expected === undefined) throw new ApiError('admin-disabled', 'set LONGHAUL_ADMIN_TOKEN to enable the admin API');
    const given = bearer(c);
    if (given === undefined || !timingSafeEqual(createHash('sha256').update(given).digest(), expected)) {
      throw new ApiError('unauthorized', 'the admin token is missing or wrong', { headers: { 'WWW-Authenticate': 'Bearer' } });
    }
    await next();
  };
}
