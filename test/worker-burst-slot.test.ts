/**
 * The burst slot (docs/scheduling.md#fairness): a worker whose slots all hold one tenant's jobs starts a
 * job of a tenant with none running anywhere beyond its slots, without waiting for one of the first
 * tenant's jobs to end; at most LONGHAUL_WORKER_BURST_SLOTS such jobs at once, and never one of the tenant
 * holding the slots. With no burst slots, the newcomer waits for a slot. The first tenant's jobs run
 * far longer than the test, so none ends unless the test cancels it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedTenant } from '../src/tenants/repository.ts';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, waitFor } from './support/worker.ts';

const SLOTS = 3;
const LONG = { type: 'synthetic', input: { chunks: 1, chunk_ms: 600_000 } };
/** Of another type: a type's own slots in the process do not bound it with the synthetic jobs. */
const LONG_OTHER = { type: 'stalls', input: { ms: 600_000 } };

/** A service with an API and a worker of SLOTS slots and `burst` burst slots. */
function serviceWith(burst: number) {
  let t: TestService;
  beforeAll(async () => {
    t = await startTestService({
      roles: ['api', 'worker'],
      env: {
        LONGHAUL_WORKER_CONCURRENCY: String(SLOTS),
        LONGHAUL_WORKER_BURST_SLOTS: String(burst),
        LONGHAUL_JOB_TYPES: FIXTURE_TYPES,
      },
    });
  });
  afterAll(async () => t.stop());
  return () => t;
}

async function submit(t: TestService, tenant: CreatedTenant, n: number, job: object = LONG): Promise<string[]> {
  const res = await t.api('/v1/jobs/batch', {
    method: 'POST',
    key: tenant.api_key,
    json: { jobs: Array.from({ length: n }, () => job) },
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { data: Array<{ id: string }> }).data.map((d) => d.id);
}

/** Jobs RUNNING now, per tenant. */
async function running(t: TestService, tenants: CreatedTenant[]): Promise<number[]> {
  const { rows } = await t.service.pool.query<{ tenant_id: string; n: number }>(
    `SELECT tenant_id, count(*)::int AS n FROM jobs WHERE status = 'RUNNING' AND tenant_id = ANY($1::uuid[]) GROUP BY 1`,
    [tenants.map((x) => x.id)],
  );
  return tenants.map((x) => rows.find((r) => r.tenant_id === x.id)?.n ?? 0);
}

async function until(t: TestService, what: string, tenants: CreatedTenant[], ok: (n: number[]) => boolean) {
  return waitFor(
    what,
    async () => {
      const n = await running(t, tenants);
      return ok(n) ? n : undefined;
    },
    15_000,
    20,
  );
}

/**
 * The most jobs of `tenants` that ran at once, from when each was claimed to when it finished (or now,
 * if it still runs).
 */
async function mostAtOnce(t: TestService, tenants: CreatedTenant[]): Promise<number | undefined> {
  const { rows } = await t.service.pool.query<{ n: number }>(
    `WITH spans AS (SELECT started_at, coalesce(finished_at, 'infinity') AS ended FROM jobs
                     WHERE tenant_id = ANY($1::uuid[]) AND started_at IS NOT NULL)
     SELECT max((SELECT count(*) FROM spans k WHERE k.started_at <= s.started_at AND k.ended > s.started_at))::int AS n
       FROM spans s`,
    [tenants.map((x) => x.id)],
  );
  return rows[0]?.n;
}

/** A's jobs that ended (none may, unless the test cancels one). */
async function ended(t: TestService, tenant: CreatedTenant): Promise<number> {
  const { rows } = await t.service.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND finished_at IS NOT NULL`,
    [tenant.id],
  );
  return rows[0]?.n ?? 0;
}

async function cancel(t: TestService, tenant: CreatedTenant, id: string): Promise<void> {
  const res = await t.api(`/v1/jobs/${id}/cancel`, { method: 'POST', key: tenant.api_key });
  expect(res.status).toBeLessThan(300);
  await waitFor(`job ${id} cancelled`, async () => {
    const { rows } = await t.service.pool.query(`SELECT 1 FROM jobs WHERE id = $1 AND status = 'CANCELLED'`, [id]);
    return rows.length > 0;
  });
}

/** Cancels every job of `tenants` and waits until none runs, so the worker stops at once. */
async function cancelAll(t: TestService, tenants: CreatedTenant[]): Promise<void> {
  for (const x of tenants) {
    const res = await t.api('/v1/jobs/cancel', { method: 'POST', key: x.api_key, json: { filter: {} } });
    expect(res.status).toBe(200);
  }
  await until(t, 'every job cancelled', tenants, (n) => n.every((x) => x === 0));
}

describe('a worker with a burst slot', () => {
  const service = serviceWith(1);

  it("starts a newly active tenant's job beside another tenant's full slots, one at a time", async () => {
    const t = service();
    const a = await t.newTenant();
    const b = await t.newTenant();
    const c = await t.newTenant();
    await submit(t, a, 2 * SLOTS);
    // A alone takes every slot, and not the burst slot: it already runs jobs.
    await until(t, 'A in every slot', [a], ([n]) => n === SLOTS);
    // Two newcomers at once: B with two jobs, C with one. One of them takes the burst slot.
    const [bIds, cIds] = await Promise.all([submit(t, b, 2), submit(t, c, 1, LONG_OTHER)]);
    const first = await until(t, 'a newcomer running', [a, b, c], ([, nb, nc]) => (nb ?? 0) + (nc ?? 0) >= 1);
    expect(first[0], 'A still in every slot').toBe(SLOTS);
    expect(await ended(t, a), "A's jobs ended before the newcomer's started").toBe(0);
    // The burst slot's job ends: the slot goes to a newcomer's job again (B's or C's, neither runs one), one.
    const { rows } = await t.service.pool.query<{ id: string; tenant_id: string }>(
      `SELECT id, tenant_id FROM jobs WHERE status = 'RUNNING' AND id = ANY($1::uuid[])`,
      [[...bIds, ...cIds]],
    );
    expect(rows).toHaveLength(1);
    const burst = rows[0];
    await cancel(t, burst?.tenant_id === b.id ? b : c, burst?.id ?? '');
    await until(t, 'a newcomer running again', [b, c], ([nb, nc]) => (nb ?? 0) + (nc ?? 0) === 1);
    expect((await running(t, [a]))[0]).toBe(SLOTS);
    expect(await ended(t, a)).toBe(0);
    expect(await mostAtOnce(t, [a, b, c]), 'jobs at once, burst slot included').toBe(SLOTS + 1);
    expect(await mostAtOnce(t, [a]), "A's jobs at once").toBe(SLOTS);
    await cancelAll(t, [a, b, c]);
  });
});

describe('a worker with no burst slot', () => {
  const service = serviceWith(0);

  it("starts a newly active tenant's job only once a slot frees", async () => {
    const t = service();
    const a = await t.newTenant();
    const b = await t.newTenant();
    const aIds = await submit(t, a, 2 * SLOTS);
    await until(t, 'A in every slot', [a], ([n]) => n === SLOTS);
    await submit(t, b, 1, LONG_OTHER);
    // One of A's jobs ends: its slot goes to B, ahead of A's older jobs.
    const { rows } = await t.service.pool.query<{ id: string }>(
      `SELECT id FROM jobs WHERE status = 'RUNNING' AND id = ANY($1::uuid[]) LIMIT 1`,
      [aIds],
    );
    await cancel(t, a, rows[0]?.id ?? '');
    await until(t, 'B running', [b], ([n]) => n === 1);
    expect(await running(t, [a, b])).toEqual([SLOTS - 1, 1]);
    expect(await mostAtOnce(t, [a, b]), 'jobs at once').toBe(SLOTS);
    await cancelAll(t, [a, b]);
  });
});
