/**
 * The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy` names
 * each of a tenant's limits with its quota (`q`), window (`w`) and unit (`qu`), and `RateLimit` gives,
 * per policy, what remains (`r`) and the seconds until it is whole again (`t`). Both are Structured
 * Field Lists of Strings with parameters. The pending-jobs limit is a count of jobs in the queue at
 * once, so it carries the draft's `concurrent-requests` unit and no window.
 */
import type { Verdict } from '../tenants/limits.ts';

export function rateLimitHeaders(verdict: Verdict): Record<string, string> {
  const policy = verdict.policies.map(
    (p) =>
      `"${p.name}";q=${p.quota}` +
      (p.windowSeconds === undefined ? ';qu="concurrent-requests"' : `;w=${p.windowSeconds}`),
  );
  const current = verdict.policies.map((p) => `"${p.name}";r=${p.remaining};t=${p.resetSeconds}`);
  return {
    ...(verdict.admitted ? {} : { 'Retry-After': String(verdict.retryAfterSeconds) }),
    'RateLimit-Policy': policy.join(', '),
    RateLimit: current.join(', '),
  };
}
