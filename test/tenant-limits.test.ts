/**
 * Tenant limits (src/tenants/limits.ts): set through the admin API; past a pending-jobs or submission-rate
 * limit POST /v1/jobs answers 429 with Retry-After and the RateLimit headers and writes nothing, and the
 * limits hold across two API processes sharing the database (no workers run: jobs stay PENDING).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitHeaders } from '../src/api/rate-limit.ts';
import type { CreatedTenant } from '../src/tenants/repository.ts';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';
import { dbSnapshot } from './support/snapshot.ts';

let a: TestService;
let b: TestService;
// No caching: each process sees a limit set through the other at once (else within the cache time).
const env = { LONGHAUL_AUTH_CACHE_SECONDS: '0' };
beforeAll(async () => {
  a = await startTestService({ env });
  b = await startTestService({ env, db: a.db });
});
afterAll(async () => {
  await b.stop();
  await a.stop();
});

const job = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } };

function admin(t: TestService, path: string, init: { method?: string; json?: unknown } = {}) {
  return t.api(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
}

async function jobsOf(tenantId: string): Promise<{ jobs: number; queued: number }> {
  const { rows } = await a.service.pool.query<{ jobs: number; queued: number }>(
    `SELECT (SELECT count(*)::int FROM jobs WHERE tenant_id = $1) AS jobs,
            (SELECT count(*)::int FROM pgboss.job j JOIN jobs ON jobs.id = j.id WHERE jobs.tenant_id = $1) AS queued`,
    [tenantId],
  );
  return rows[0] ?? { jobs: -1, queued: -1 };
}

/** Submits through A and B alternately, all at once. */
function submitAll(tenant: CreatedTenant, n: number, key?: (i: number) => string): Promise<Response[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      (i % 2 === 0 ? a : b).api('/v1/jobs', {
        method: 'POST',
        json: job,
        key: tenant.api_key,
        headers: key === undefined ? {} : { 'idempotency-key': key(i) },
      }),
    ),
  );
}

describe('the admin API for limits', () => {
  it('reads, changes and lifts limits; an absent field keeps its value', async () => {
    const tenant = await a.newTenant();
    const path = `/v1/admin/tenants/${tenant.id}/limits`;
    const none = await admin(a, path);
    expect(none.status).toBe(200);
    expect(await none.json()).toEqual({
      tenant_id: tenant.id,
      max_running_jobs: null,
      max_pending_jobs: null,
      submission_rate: null,
      updated_at: null,
    });
    const set = await admin(a, path, {
      method: 'PATCH',
      json: { max_running_jobs: 2, submission_rate: { limit: 10, window_seconds: 60 } },
    });
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({
      max_running_jobs: 2,
      max_pending_jobs: null,
      submission_rate: { limit: 10, window_seconds: 60 },
    });
    const more = await admin(b, path, { method: 'PATCH', json: { max_pending_jobs: 5, submission_rate: null } });
    expect(await more.json()).toMatchObject({ max_running_jobs: 2, max_pending_jobs: 5, submission_rate: null });
  });

  it.each([
    ['a running limit of 0', { max_running_jobs: 0 }, 'max_running_jobs'],
    ['a rate without a window', { submission_rate: { limit: 5 } }, 'submission_rate.window_seconds'],
    ['an unknown limit', { max_queued: 3 }, '(body)'],
    ['no limit at all', {}, '(body)'],
  ])('refuses %s with 422 naming the field, writing nothing', async (_what, body, field) => {
    const tenant = await a.newTenant();
    const before = await dbSnapshot(a.service.pool);
    const res = await admin(a, `/v1/admin/tenants/${tenant.id}/limits`, { method: 'PATCH', json: body });
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { type: string; errors: Array<{ field: string }> };
    expect(problem.type).toBe('https://longhaul.dev/problems/validation-error');
    expect(problem.errors.map((e) => e.field)).toContain(field);
    expect(await dbSnapshot(a.service.pool)).toEqual(before);
  });

  it('answers 404 for an unknown tenant and 401 without the admin token', async () => {
    const path = `/v1/admin/tenants/${randomUUID()}/limits`;
    expect((await admin(a, path, { method: 'PATCH', json: { max_pending_jobs: 1 } })).status).toBe(404);
    expect((await admin(a, path)).status).toBe(404);
    expect((await a.api(path)).status).toBe(401);
  });
});

describe('POST /v1/jobs past a limit', () => {
  it('keeps the submission rate across two API processes: 429 with Retry-After and RateLimit, nothing written', async () => {
    const tenant = await a.newTenant();
    await admin(a, `/v1/admin/tenants/${tenant.id}/limits`, {
      method: 'PATCH',
      json: { submission_rate: { limit: 4, window_seconds: 3600 } },
    });
    const replies = await submitAll(tenant, 10);
    const accepted = replies.filter((r) => r.status === 202);
    const refused = replies.filter((r) => r.status === 429);
    expect(accepted).toHaveLength(4);
    expect(refused).toHaveLength(6);
    for (const r of refused) {
      const problem = (await r.json()) as { type: string };
      expect(problem.type).toBe('https://longhaul.dev/problems/rate-limited');
      // One job per 900 s refills the bucket.
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(800);
      expect(Number(r.headers.get('retry-after'))).toBeLessThanOrEqual(900);
      expect(r.headers.get('ratelimit-policy')).toBe('"rate";q=4;w=3600');
      expect(r.headers.get('ratelimit')).toMatch(/^"rate";r=0;t=\d+$/);
    }
    expect(accepted[0]?.headers.get('ratelimit-policy')).toBe('"rate";q=4;w=3600');
    expect(await jobsOf(tenant.id)).toEqual({ jobs: 4, queued: 4 });

    // Another tenant is not limited by it.
    expect(replies.every((r) => r.headers.get('x-request-id') !== null)).toBe(true);
    const other = await a.api('/v1/jobs', { method: 'POST', json: job });
    expect(other.status).toBe(202);
    expect(other.headers.get('ratelimit')).toBeNull();
  });

  it('keeps the pending-jobs limit across two API processes; a replay costs nothing', async () => {
    const tenant = await a.newTenant();
    await admin(b, `/v1/admin/tenants/${tenant.id}/limits`, { method: 'PATCH', json: { max_pending_jobs: 3 } });
    const keyOf = (i: number) => `pending-${tenant.id}-${i}`;
    const replies = await submitAll(tenant, 9, keyOf);
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 202)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(6);
    const refused = replies.find((r) => r.status === 429);
    expect(((await refused?.json()) as { type: string }).type).toBe(
      'https://longhaul.dev/problems/too-many-pending-jobs',
    );
    expect(refused?.headers.get('retry-after')).toBe('1');
    expect(refused?.headers.get('ratelimit-policy')).toBe('"pending";q=3;qu="concurrent-requests"');
    expect(refused?.headers.get('ratelimit')).toBe('"pending";r=0;t=1');
    expect(await jobsOf(tenant.id)).toEqual({ jobs: 3, queued: 3 });

    // A repeat of an accepted request is its replay, not a new job, even at the limit.
    const first = statuses.indexOf(202);
    const replay = await b.api('/v1/jobs', {
      method: 'POST',
      json: job,
      key: tenant.api_key,
      headers: { 'idempotency-key': keyOf(first) },
    });
    expect(replay.status).toBe(202);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');

    // Lifting the limit lets submissions through both.
    await admin(a, `/v1/admin/tenants/${tenant.id}/limits`, { method: 'PATCH', json: { max_pending_jobs: null } });
    expect((await a.api('/v1/jobs', { method: 'POST', json: job, key: tenant.api_key })).status).toBe(202);
    expect((await b.api('/v1/jobs', { method: 'POST', json: job, key: tenant.api_key })).status).toBe(202);
    expect((await jobsOf(tenant.id)).jobs).toBe(5);
  });
});

describe('the RateLimit header fields', () => {
  it('lists each policy with its quota and what remains', () => {
    expect(
      rateLimitHeaders({
        admitted: false,
        refusedBy: 'rate',
        retryAfterSeconds: 6,
        policies: [
          { name: 'pending', quota: 100, remaining: 40, resetSeconds: 0 },
          { name: 'rate', quota: 10, windowSeconds: 60, remaining: 0, resetSeconds: 60 },
        ],
      }),
    ).toEqual({
      'Retry-After': '6',
      'RateLimit-Policy': '"pending";q=100;qu="concurrent-requests", "rate";q=10;w=60',
      RateLimit: '"pending";r=40;t=0, "rate";r=0;t=60',
    });
  });
});
