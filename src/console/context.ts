/** What the console's pages share: the API's dependencies and the signed-in session. */
import type { Context, Hono } from 'hono';
import type { AppDeps, Variables } from '../api/context.ts';
import { ApiError } from '../api/errors.ts';
import type { TokenSigner } from '../tokens/signer.ts';
import { scopeOf, type Session } from './session.ts';

export type ConsoleEnv = { Variables: Variables & { session: Session } };
export type ConsoleApp = Hono<ConsoleEnv>;
export type ConsoleContext = Context<ConsoleEnv>;
export type ConsoleDeps = AppDeps & { signer: TokenSigner };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string | undefined): s is string {
  return s !== undefined && UUID.test(s);
}

/** A path id that must be a UUID: anything else names nothing, so it is a 404 like an unknown one. */
export function pathId(c: ConsoleContext, name: string, what: string): string {
  const id = c.req.param(name);
  if (!isUuid(id)) throw new ApiError('not-found', `no ${what} with id ${id ?? ''}`);
  return id.toLowerCase();
}

/**
 * The tenant a page's queries are confined to: a tenant session's own, always; for the admin, the
 * `tenant` filter if one is chosen, else undefined (every tenant).
 */
export function tenantScope(c: ConsoleContext): string | undefined {
  const session = c.get('session');
  const own = scopeOf(session);
  if (own !== undefined) return own;
  const chosen = c.req.query('tenant');
  if (chosen === undefined || chosen === '') return undefined;
  if (!isUuid(chosen)) throw new ApiError('bad-request', 'the tenant filter must be a tenant id');
  return chosen.toLowerCase();
}

/** A date-time filter from a form's datetime-local field (taken as UTC); a bad one is a 400. */
export function dateFilter(value: string | undefined, field: string): Date | undefined {
  if (value === undefined || value === '') return undefined;
  const d = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  if (Number.isNaN(d.getTime())) throw new ApiError('bad-request', `${field} is not a date and time`);
  return d;
}

/** Form fields of a POST (urlencoded or multipart), each as its last or all values. */
export async function formOf(
  c: ConsoleContext,
): Promise<{ one: (k: string) => string | undefined; all: (k: string) => string[] }> {
  const body = await c.req.parseBody({ all: true });
  const values = (k: string): string[] => {
    const v = body[k];
    const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
    return list.filter((x): x is string => typeof x === 'string');
  };
  return { one: (k) => values(k).at(-1), all: values };
}

/** Post/Redirect/Get: back to a console page with a fixed notice. */
export function done(c: ConsoleContext, to: string, notice: string): Response {
  const url = new URL(to, 'http://console.invalid');
  url.searchParams.set('notice', notice);
  return c.redirect(url.pathname + url.search, 303);
}
