/**
 * CORS, for a partner's web page that calls the API from its own origin (with a key it holds, or a
 * stream token): off unless LONGHAUL_CORS_ORIGINS names origins. Exact origins only, never `*`, and no
 * credentials mode (the API takes bearer tokens, not cookies).
 */
import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';

/** Response headers a page may read: what a client needs for retries, errors, paging and replays. */
const EXPOSED = ['Retry-After', 'X-Request-Id', 'Location', 'Idempotent-Replayed', 'RateLimit', 'RateLimit-Policy'];
/** How long a browser may cache a preflight's answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/** Hono's CORS middleware for `origins` (answers preflights, adds the headers to allowed origins' responses). */
export function corsMiddleware(origins: readonly string[]): MiddlewareHandler {
  return cors({
    origin: (origin) => (origins.includes(origin) ? origin : null),
    exposeHeaders: EXPOSED,
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
  });
}

/** The CORS headers of a response to `origin` (none unless it is allowed): for the submit lane, which Hono does not see. */
export function corsHeaders(origins: readonly string[], origin: string | undefined): Record<string, string> {
  if (origin === undefined || !origins.includes(origin)) return {};
  return { 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': EXPOSED.join(','), Vary: 'Origin' };
}
