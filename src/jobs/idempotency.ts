/**
 * Idempotency-Key (IETF httpapi draft): keys are scoped per tenant; a request is fingerprinted so
 * that the same key with a different body is recognised (422) rather than replayed.
 */
import { hash } from 'node:crypto';

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
  // Loops and one string rather than entries, filter, map and join: a batch fingerprints up to 1,000 bodies.
  let out: string;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  // The default sort compares UTF-16 code units, as `<` does.
  const keys = Object.keys(value).sort();
  out = '{';
  for (const key of keys) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined) continue;
    out += `${out.length === 1 ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

export function fingerprint(body: unknown): string {
  return hash('sha256', canonicalJson(body), 'base64url');
}

/** The advisory-lock id of a (tenant, key): held by the transaction writing it, so a concurrent duplicate sees it in flight. */
export function keyLockId(tenantId: string, key: string): string {
  return hash('sha256', `${tenantId}\u0000${key}`, 'buffer').readBigInt64BE(0).toString();
}
