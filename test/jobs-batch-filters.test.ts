/**
 * POST /v1/jobs/batch (one transaction, per-job idempotency keys, a 422 naming every bad job's index
 * and field, the body limit), the list filters of GET /v1/jobs with the unknown-parameter 400 of
 * every list endpoint, and POST /v1/jobs/cancel. API only: submitted jobs stay PENDING.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLimits } from '../src/tenants/limits.ts';
import { statusEvents } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ env: { LONGHAUL_BODY_LIMIT_BYTES: String(256 * 1024) } });
});
afterAll(async () => t.stop());

const job = (n = 0, extra: Record<string, unknown> = {}) => ({
  type: 'synthetic',
  input: { chunks: 1, chunk_ms: n },
  ...extra,
});

interface Created {
  data: Array<{ id: string; status: string; replayed: boolean; scheduled_for: string | null }>;
}
interface Problem {
  type: string;
  errors?: Array<{ field: string; message: string }>;
}

async function counts(): Promise<{ jobs: number; boss: number }> {
  const { rows } = await t.service.pool.query<{ jobs: number; boss: number }>(
    `SELECT (SELECT count(*)::int FROM jobs) AS jobs, (SELECT count(*)::int FROM pgboss.job) AS boss`,
  );
  return rows[0] ?? { jobs: -1, boss: -1 };
}

const batch = (jobs: unknown[], headers?: Record<string, string>) =>
  t.api('/v1/jobs/batch', { method: 'POST', json: { jobs }, headers });

describe('POST /v1/jobs/batch', () => {
  it('accepts jobs in one transaction and answers their ids in order', async () => {
    const before = await counts();
    const jobs = Array.from({ length: 300 }, (_, i) => job(i, { metadata: { i } }));
    const res = await batch(jobs);
    expect(res.status).toBe(202);
    const { data } = (await res.json()) as Created;
    expect(data).toHaveLength(300);
    const { rows } = await t.service.pool.query<{ id: string; ms: number }>(
      `SELECT id, (input->>'chunk_ms')::int AS ms FROM jobs WHERE id = ANY($1::uuid[])`,
      [data.map((d) => d.id)],
    );
    const ms = new Map(rows.map((r) => [r.id, r.ms]));
    expect(data.map((d) => ms.get(d.id))).toEqual(jobs.map((_, i) => i));
    expect(await counts()).toEqual({ jobs: before.jobs + 300, boss: before.boss + 300 });
  });

  it('replays each job by its idempotency_key, and takes the keys of single submissions', async () => {
    const single = randomUUID();
    const first = await t.api('/v1/jobs', { method: 'POST', json: job(7), headers: { 'idempotency-key': single } });
    const singleId = ((await first.json()) as { id: string }).id;
    const keys = [randomUUID(), randomUUID()];
    const one = (await (await batch([job(1, { idempotency_key: keys[0] }), job(2)])).json()) as Created;
    const before = await counts();
    const again = await batch([
      job(1, { idempotency_key: keys[0] }),
      job(3, { idempotency_key: keys[1] }),
      job(7, { idempotency_key: single }),
    ]);
    expect(again.status).toBe(202);
    const { data } = (await again.json()) as Created;
    expect(data.map((d) => d.replayed)).toEqual([true, false, true]);
    expect(data[0]?.id).toBe(one.data[0]?.id);
    expect(data[2]?.id).toBe(singleId);
    expect(await counts()).toEqual({ jobs: before.jobs + 1, boss: before.boss + 1 });
  });

  it('refuses the whole batch when one job is invalid, naming each by index and field', async () => {
    const before = await counts();
    const res = await batch([
      job(),
      job(0, { priority: 1000 }),
      job(),
      { type: 'nope', input: {} },
      job(0, { run_at: 'soon' }),
      job(0, { delay_seconds: 1, run_at: new Date().toISOString() }),
    ]);
    expect(res.status).toBe(422);
    const p = (await res.json()) as Problem;
    expect(p.errors?.map((e) => e.field).sort()).toEqual(['jobs.1.priority', 'jobs.4.run_at']);
    // Past the schema, the jobs' own checks are gathered the same way.
    const res2 = await batch([
      job(),
      { type: 'nope', input: {} },
      job(0, { delay_seconds: 1, run_at: new Date().toISOString() }),
    ]);
    expect(res2.status).toBe(422);
    expect(((await res2.json()) as Problem).errors?.map((e) => e.field)).toEqual([
      'jobs.1.type',
      'jobs.2.delay_seconds',
    ]);
    const key = randomUUID();
    const dup = await batch([job(0, { idempotency_key: key }), job(1, { idempotency_key: key })]);
    expect(dup.status).toBe(422);
    expect(((await dup.json()) as Problem).errors?.[0]?.field).toBe('jobs.1.idempotency_key');
    const reused = randomUUID();
    await batch([job(0, { idempotency_key: reused })]);
    const before2 = await counts();
    const conflict = await batch([job(5), job(9, { idempotency_key: reused })]);
    expect(conflict.status).toBe(422);
    expect(((await conflict.json()) as Problem).errors?.[0]?.field).toBe('jobs.1.idempotency_key');
    expect(await counts()).toEqual(before2);
    expect((await counts()).jobs).toBe(before.jobs + 1);
  });

  it('refuses an empty batch, more than 1,000 jobs, a body over the limit and an Idempotency-Key header', async () => {
    const before = await counts();
    expect((await batch([])).status).toBe(422);
    const many = await batch(Array.from({ length: 1001 }, () => ({ type: 'synthetic', input: {} })));
    expect(many.status).toBe(422);
    expect(((await many.json()) as Problem).errors?.[0]?.field).toBe('jobs');
    const big = await batch(Array.from({ length: 900 }, (_, i) => job(i, { metadata: { pad: 'x'.repeat(300) } })));
    expect(big.status).toBe(413);
    expect(((await big.json()) as Problem).type).toMatch(/payload-too-large$/);
    const header = await batch([job()], { 'idempotency-key': randomUUID() });
    expect(header.status).toBe(400);
    expect(await counts()).toEqual(before);
  });
  it("counts the jobs it creates against the tenant's limits together: past them, a 429 and nothing written", async () => {
    const tenant = await t.newTenant();
    await setLimits(t.service.pool, tenant.id, { max_pending_jobs: 3 });
    const send = (n: number) =>
      t.api('/v1/jobs/batch', {
        method: 'POST',
        json: { jobs: Array.from({ length: n }, () => job()) },
        key: tenant.api_key,
      });
    const before = await counts();
    const over = await send(4);
    expect(over.status).toBe(429);
    expect(((await over.json()) as Problem).type).toMatch(/too-many-pending-jobs$/);
    expect(await counts()).toEqual(before);
    const fits = await send(3);
    expect(fits.status).toBe(202);
    expect(fits.headers.get('ratelimit')).toContain('"pending";r=0');
    expect((await send(1)).status).toBe(429);
    expect(await counts()).toEqual({ jobs: before.jobs + 3, boss: before.boss + 3 });
  });
});

describe('GET /v1/jobs filters', () => {
  it('filters by creation time, scheduled, priority, schedule_id and metadata containment', async () => {
    const tenant = await t.newTenant();
    const api = (path: string, init: Parameters<TestService['api']>[1] = {}) =>
      t.api(path, { ...init, key: tenant.api_key });
    const submit = async (body: Record<string, unknown>) =>
      (await (await api('/v1/jobs', { method: 'POST', json: body })).json()) as { id: string; created_at: string };
    const a = await submit(job(0, { metadata: { region: 'eu', tier: 'gold' }, priority: 5 }));
    const b = await submit(job(0, { metadata: { region: 'us' }, delay_seconds: 600 }));
    const c = await submit(job(0, { metadata: { region: 'eu', n: 1 } }));
    const schedule = randomUUID();
    await t.service.pool.query('UPDATE jobs SET schedule_id = $1 WHERE id = $2', [schedule, c.id]);
    const ids = async (q: string) => {
      const res = await api(`/v1/jobs?${q}`);
      expect(res.status, q).toBe(200);
      return ((await res.json()) as { data: Array<{ id: string }> }).data.map((j) => j.id).sort();
    };
    const sorted = (...xs: string[]) => xs.sort();
    expect(await ids('metadata.region=eu')).toEqual(sorted(a.id, c.id));
    expect(await ids('metadata.region=eu&metadata.tier=gold')).toEqual([a.id]);
    expect(await ids('metadata.n=1')).toEqual([]); // values are matched as strings
    expect(await ids('priority=5')).toEqual([a.id]);
    expect(await ids('scheduled=true')).toEqual([b.id]);
    expect(await ids(`schedule_id=${schedule}`)).toEqual([c.id]);
    expect(await ids(`created_after=${encodeURIComponent(b.created_at)}`)).toEqual(sorted(b.id, c.id));
    expect(await ids(`created_before=${encodeURIComponent(b.created_at)}`)).toEqual([a.id]);
  });

  it('serves metadata containment from the GIN index', async () => {
    const c = await t.service.pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('SET LOCAL enable_seqscan = off');
      const { rows } = await c.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT id FROM jobs WHERE metadata @> '{"region":"eu"}'`,
      );
      expect(rows.map((r) => r['QUERY PLAN']).join('\n')).toContain('jobs_metadata');
      await c.query('ROLLBACK');
    } finally {
      c.release();
    }
  });

  it('answers an unknown query parameter with a 400 naming it, on every list endpoint', async () => {
    const { id } = (await (await t.api('/v1/jobs', { method: 'POST', json: job() })).json()) as { id: string };
    for (const path of [
      '/v1/jobs?created_afterr=2020-01-01T00:00:00Z',
      '/v1/dead-letters?sort=asc',
      '/v1/deliveries?sort=asc',
      `/v1/jobs/${id}/deliveries?sort=asc`,
      `/v1/jobs/${id}/artifacts?sort=asc`,
      '/v1/webhook-endpoints?sort=asc',
    ]) {
      const res = await t.api(path);
      const p = (await res.json()) as Problem;
      const name = /\?([^=]+)=/.exec(path)?.[1];
      expect([res.status, p.errors?.[0]?.field], path).toEqual([400, `query.${name}`]);
    }
    const bad = await t.api('/v1/jobs?priority=high');
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as Problem).errors?.[0]?.field).toBe('query.priority');
  });
});

describe('POST /v1/jobs/cancel', () => {
  it('cancels the active jobs matching a filter, bounded, and reports how many', async () => {
    const tenant = await t.newTenant();
    const api = (path: string, init: Parameters<TestService['api']>[1] = {}) =>
      t.api(path, { ...init, key: tenant.api_key });
    const res = await api('/v1/jobs/batch', {
      method: 'POST',
      json: {
        jobs: [
          ...Array.from({ length: 5 }, () => job(0, { metadata: { batch: 'x' } })),
          job(0, { metadata: { batch: 'y' } }),
        ],
      },
    });
    const ids = ((await res.json()) as Created).data.map((d) => d.id);
    const running = ids[0] ?? '';
    await t.service.pool.query(`UPDATE jobs SET status = 'RUNNING' WHERE id = $1`, [running]);
    const cancel = async (body: unknown) => {
      const r = await api('/v1/jobs/cancel', { method: 'POST', json: body });
      expect(r.status).toBe(200);
      return (await r.json()) as { cancelled: number; requested: number; more: boolean };
    };
    const first = await cancel({ filter: { metadata: { batch: 'x' } }, limit: 3 });
    const second = await cancel({ filter: { metadata: { batch: 'x' } }, limit: 3 });
    expect([first.cancelled + first.requested, first.more]).toEqual([3, true]);
    expect([second.cancelled + second.requested, second.more]).toEqual([2, false]);
    expect([first.cancelled + second.cancelled, first.requested + second.requested]).toEqual([4, 1]);
    // A running job already asked to stop is not counted again.
    expect(await cancel({ filter: { metadata: { batch: 'x' } } })).toEqual({ cancelled: 0, requested: 0, more: false });
    const { rows } = await t.service.pool.query<{ status: string; n: number; asked: number }>(
      `SELECT status, count(*)::int AS n, count(cancel_requested_at)::int AS asked FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status ORDER BY status`,
      [ids],
    );
    expect(rows).toEqual([
      { status: 'CANCELLED', n: 4, asked: 4 },
      { status: 'PENDING', n: 1, asked: 0 },
      { status: 'RUNNING', n: 1, asked: 1 },
    ]);
    const events = await Promise.all(ids.map((id) => statusEvents(t.service.pool, id)));
    expect(events.flat().filter((e) => e.status === 'CANCELLED')).toHaveLength(4);
    // The other tenant's jobs were not touched; a bad filter is a 422 naming the field.
    const bad = await api('/v1/jobs/cancel', { method: 'POST', json: { filter: { status: 'DONE' } } });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as Problem).errors?.[0]?.field).toBe('filter.status');
    const over = await api('/v1/jobs/cancel', { method: 'POST', json: { filter: {}, limit: 1001 } });
    expect(over.status).toBe(422);
  });
});
