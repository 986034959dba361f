/**
 * Idempotency-Key (IETF httpapi draft): keys are scoped per tenant; a request is fingerprinted so
 * that the same key with a different body is recognised (422) rather than replayed.
 */
import { createHash } from 'node:crypto';

/** Longest key accepted (as Stripe: 255 characters). */
export const MAX_KEY_LENGTH = 255;
/** Visible ASCII only: keys travel in a header and are logged by proxies. */
const KEY_PATTERN = /^[\x21-\x7e]+$/;

export interface IdempotencyRequest {
  key: string;
  fingerprint: string;
}

export function validateKey(key: string): string | undefined {
  if (key.length === 0) return 'must not be empty';
  if (key.length > MAX_KEY_LENGTH) return `must be at most ${MAX_KEY_LENGTH} characters`;
  if (!KEY_PATTERN.test(key)) return 'must be visible ASCII characters without spaces';
  return undefined;
}

/** JSON with object keys sorted at every level, so equal bodies fingerprint equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function fingerprint(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('base64url');
}

/** The advisory-lock id of a (tenant, key): held by the transaction writing it, so a concurrent duplicate sees it in flight. */
export function keyLockId(tenantId: string, key: string): string {
  return createHash('sha256').update(tenantId).update('\u0000').update(key).digest().readBigInt64BE(0).toString();
}
