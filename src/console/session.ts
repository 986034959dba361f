/**
 * Console sessions: the admin token or a tenant's API key, exchanged once for a signed, expiring
 * session in an HttpOnly, SameSite=Strict cookie. The key itself is never stored anywhere (not in the
 * cookie, a URL, the browser's storage or a log). Each session carries its own CSRF token, which every
 * state-changing request must echo (a form field or the X-CSRF-Token header), on top of SameSite and
 * an Origin check.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { TokenSigner } from '../tokens/signer.ts';
import { TokenError } from '../tokens/signer.ts';
import type { Queryable } from '../db/pool.ts';
import { apiKeyLive, getTenant, tenantByApiKey, type Tenant } from '../tenants/repository.ts';

export const COOKIE = 'longhaul_console';

/** Who is signed in: the admin (every tenant) or one tenant through one of its keys. */
export type Session =
  | { kind: 'admin'; csrf: string; expiresAt: Date }
  | { kind: 'tenant'; tenant: Tenant; keyId: string; csrf: string; expiresAt: Date };

/** The tenant a session is confined to; undefined for the admin. */
export const scopeOf = (s: Session): string | undefined => (s.kind === 'tenant' ? s.tenant.id : undefined);

function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, createHash('sha256').update(expected).digest());
}

/** The session a secret opens: the admin token's, a live API key's, or none. */
export async function signIn(
  db: Queryable,
  adminToken: string | undefined,
  secret: string,
): Promise<{ kind: 'admin' } | { kind: 'tenant'; tenant: Tenant; keyId: string } | undefined> {
  if (adminToken !== undefined && sameSecret(secret, adminToken)) return { kind: 'admin' };
  const holder = await tenantByApiKey(db, secret);
  return holder === undefined ? undefined : { kind: 'tenant', tenant: holder.tenant, keyId: holder.keyId };
}

const secure = (c: Context): boolean =>
  new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https';

export async function startSession(
  c: Context,
  signer: TokenSigner,
  who: { kind: 'admin' } | { kind: 'tenant'; tenant: Tenant; keyId: string },
  ttlSeconds: number,
): Promise<void> {
  const claims =
    who.kind === 'admin'
      ? { sub: '*', csrf: randomBytes(24).toString('base64url') }
      : { sub: who.tenant.id, kid: who.keyId, csrf: randomBytes(24).toString('base64url') };
  const { token } = await signer.sign('console', claims, ttlSeconds);
  setCookie(c, COOKIE, token, {
    httpOnly: true,
    sameSite: 'Strict',
    secure: secure(c),
    path: '/console',
    maxAge: ttlSeconds,
  });
}

export function endSession(c: Context): void {
  deleteCookie(c, COOKIE, { path: '/console', secure: secure(c) });
}

/**
 * The request's session, if its cookie is valid and unexpired and (for a tenant) the key it was opened
 * with is still live: revoking a key ends the sessions opened with it.
 */
export async function sessionOf(c: Context, signer: TokenSigner, db: Queryable): Promise<Session | undefined> {
  const token = getCookie(c, COOKIE);
  if (token === undefined) return undefined;
  try {
    const claims = await signer.verify('console', token);
    const csrf = typeof claims.csrf === 'string' ? claims.csrf : '';
    const expiresAt = new Date(Number(claims.exp) * 1000);
    if (claims.sub === '*') return { kind: 'admin', csrf, expiresAt };
    const kid = typeof claims.kid === 'string' ? claims.kid : '';
    if (!(await apiKeyLive(db, kid))) return undefined;
    const tenant = await getTenant(db, claims.sub);
    return tenant === undefined ? undefined : { kind: 'tenant', tenant, keyId: kid, csrf, expiresAt };
  } catch (err) {
    if (err instanceof TokenError) return undefined;
    throw err;
  }
}

/** False for a request a browser says came from another origin (its Origin header names another host). */
export function sameOrigin(c: Context): boolean {
  const origin = c.req.header('origin');
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === c.req.header('host');
  } catch {
    return false;
  }
}

/** Whether a state-changing request carries its session's CSRF token and comes from this origin. */
export function csrfOk(c: Context, session: Session, given: string | undefined): boolean {
  if (!sameOrigin(c)) return false;
  return given !== undefined && given.length > 0 && sameSecret(given, session.csrf);
}
