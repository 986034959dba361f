import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transition } from './support/status.ts';
import { JOB_STATUSES, type JobStatus } from '../src/jobs/state.ts';
import { insertJob } from './support/jobs.ts';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, waitFor } from './support/worker.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({
    env: { LONGHAUL_CALLBACK_ALLOW: '127.0.0.1,localhost', LONGHAUL_JOB_TYPES: FIXTURE_TYPES },
  });
});
afterAll(async () => t.stop());

const job = { type: 'synthetic', input: { chunks: 2, chunk_ms: 1 } };

async function jobCount(): Promise<number> {
  const { rows } = await t.service.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
  return rows[0]?.n ?? -1;
}

describe('POST /v1/jobs', () => {
  it('accepts a job, answers 202 with Location, and stores it with its queue entry', async () => {
    const res = await t.api('/v1/jobs', {
      method: 'POST',
      json: { ...job, metadata: { order: 7 }, callback_url: 'https://example.com/hook' },
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { id: string; status: string; metadata: unknown; progress: unknown };
    expect(res.headers.get('location')).toBe(`/v1/jobs/${body.id}`);
    expect(body.status).toBe('PENDING');
    expect(body.metadata).toEqual({ order: 7 });
    const { rows } = await t.service.pool.query('SELECT id FROM pgboss.job WHERE id = $1', [body.id]);
    expect(rows).toHaveLength(1);
    const get = await t.api(`/v1/jobs/${body.id}`);
    expect(get.status).toBe(200);
    expect(((await get.json()) as { id: string }).id).toBe(body.id);
  });

  it('requires a valid API key', async () => {
    expect((await fetch(`${t.url}/v1/jobs`)).status).toBe(401);
    const res = await t.api('/v1/jobs', { key: 'lh_nope' });
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it.each([
    ['malformed JSON', { body: '{"type":', headers: { 'content-type': 'application/json' } }, 400, 'malformed-json'],
    [
      'wrong content type',
      { body: 'type=synthetic', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      415,
      'unsupported-media-type',
    ],
    ['unknown type', { json: { type: 'nope', input: {} } }, 422, 'unknown-job-type'],
    ['bad input', { json: { type: 'synthetic', input: { chunks: -1, chunk_ms: 1 } } }, 422, 'validation-error'],
    ['unknown field', { json: { ...job, extra: true } }, 422, 'validation-error'],
    [
      'unknown input field',
      { json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1, x: 1 } } },
      422,
      'validation-error',
    ],
    ['http callback', { json: { ...job, callback_url: 'http://example.com/x' } }, 422, 'validation-error'],
    [
      'callback with credentials',
      { json: { ...job, callback_url: 'https://u:p@example.com/x' } },
      422,
      'validation-error',
    ],
    ['relative callback', { json: { ...job, callback_url: '/x' } }, 422, 'validation-error'],
    ['oversized body', { json: { ...job, metadata: { pad: 'x'.repeat(1024 * 1024) } } }, 413, 'payload-too-large'],
    ['bad idempotency key', { json: job, headers: { 'idempotency-key': 'has space' } }, 400, 'bad-request'],
  ] as const)('refuses %s with a problem and creates nothing', async (_name, init, status, code) => {
    const before = await jobCount();
    const res = await t.api('/v1/jobs', { method: 'POST', ...(init as RequestInit & { json?: unknown }) });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    const problem = (await res.json()) as {
      type: string;
      status: number;
      title: string;
      detail: string;
      request_id: string;
    };
    expect(problem.type).toBe(`https://longhaul.dev/problems/${code}`);
    expect(problem.status).toBe(status);
    expect(problem.request_id).toBe(res.headers.get('x-request-id'));
    expect(await jobCount()).toBe(before);
  });

  it('allows plain http callbacks to allow-listed hosts', async () => {
    const res = await t.api('/v1/jobs', { method: 'POST', json: { ...job, callback_url: 'http://127.0.0.1:9/hook' } });
    expect(res.status).toBe(202);
  });
});

describe('Idempotency-Key', () => {
  it('replays the original response for the same key and body', async () => {
    const key = crypto.randomUUID();
    const first = await t.api('/v1/jobs', { method: 'POST', json: job, headers: { 'idempotency-key': key } });
    const firstBody = await first.text();
    await t.service.pool.query(`UPDATE jobs SET status = 'RUNNING', attempts = 1 WHERE id = $1`, [
      (JSON.parse(firstBody) as { id: string }).id,
    ]);
    const again = await t.api('/v1/jobs', {
      method: 'POST',
      json: { input: job.input, type: job.type },
      headers: { 'idempotency-key': key },
    });
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(firstBody);
  });

  it('answers 422 for the same key with a different body', async () => {
    const key = crypto.randomUUID();
    expect((await t.api('/v1/jobs', { method: 'POST', json: job, headers: { 'idempotency-key': key } })).status).toBe(
      202,
    );
    const res = await t.api('/v1/jobs', {
      method: 'POST',
      json: { ...job, metadata: { x: 1 } },
      headers: { 'idempotency-key': key },
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { type: string }).type).toContain('idempotency-key-reused');
  });

  it('creates exactly one job from 100 concurrent identical requests', async () => {
    const key = crypto.randomUUID();
    const responses = await Promise.all(
      Array.from({ length: 100 }, () =>
        t.api('/v1/jobs', { method: 'POST', json: job, headers: { 'idempotency-key': key } }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.every((s) => s === 202 || s === 409)).toBe(true);
    const ids = new Set<string>();
    for (const r of responses) if (r.status === 202) ids.add(((await r.json()) as { id: string }).id);
    expect(ids.size).toBe(1);
    const { rows } = await t.service.pool.query(
      'SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2',
      [t.tenant.id, key],
    );
    expect(rows[0]).toEqual({ n: 1 });
  });

  it('answers exactly 409 to a repeat while the first request is inside its transaction, then completes the first', async () => {
    const key = crypto.randomUUID();
    const send = (via: TestService) =>
      via.api('/v1/jobs', {
        method: 'POST',
        json: job,
        key: t.tenant.api_key,
        headers: { 'idempotency-key': key },
        // A repeat that waits for the first instead of answering 409 fails here rather than at the test's timeout.
        signal: AbortSignal.timeout(10_000),
      });
    // The test holds an uncommitted job with the same key: the first request takes the key's advisory lock,
    // then its insert waits on that row, inside its transaction, until the test lets go.
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    const other = await startTestService({ db: t.db });
    try {
      await holder.query('BEGIN');
      await insertJob(holder, t.tenant.id, { max_attempts: 1, idempotency_key: key });
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const first = send(t);
      first.catch(() => undefined); // awaited below; a failure before then must not go unhandled
      await waitFor('the first request to wait inside its transaction', async () => {
        const { rowCount } = await t.service.pool.query(
          'SELECT 1 FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))',
          [holderPid],
        );
        return rowCount === 1;
      });
      // The repeat through the same process, and through another API process on the same database.
      for (const via of [t, other]) {
        const res = await send(via);
        expect(res.status).toBe(409);
        expect(res.headers.get('retry-after')).toBe('1');
        expect(((await res.json()) as { type: string }).type).toBe(
          'https://longhaul.dev/problems/idempotency-key-in-use',
        );
      }
      await holder.query('ROLLBACK');
      const res = await first;
      expect(res.status).toBe(202);
      expect(res.headers.get('idempotent-replayed')).toBeNull();
      const created = (await res.json()) as { id: string };
      const { rows } = await t.service.pool.query<{ id: string }>(
        'SELECT id FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2',
        [t.tenant.id, key],
      );
      expect(rows).toEqual([{ id: created.id }]);
      // Once the first has finished, a repeat replays it.
      const again = await send(other);
      expect(again.status).toBe(202);
      expect(((await again.json()) as { id: string }).id).toBe(created.id);
    } finally {
      await holder.end();
      await other.stop();
    }
  });

  it('forgets keys after their expiry', async () => {
    const key = crypto.randomUUID();
    const first = (await (
      await t.api('/v1/jobs', { method: 'POST', json: job, headers: { 'idempotency-key': key } })
    ).json()) as { id: string };
    await t.service.pool.query(`UPDATE jobs SET idempotency_expires_at = now() - interval '1 second' WHERE id = $1`, [
      first.id,
    ]);
    const second = await t.api('/v1/jobs', {
      method: 'POST',
      json: { ...job, metadata: { other: true } },
      headers: { 'idempotency-key': key },
    });
    expect(second.status).toBe(202);
    expect(((await second.json()) as { id: string }).id).not.toBe(first.id);
  });

  it('scopes keys per tenant', async () => {
    const key = crypto.randomUUID();
    const other = await t.newTenant();
    const a = (await (
      await t.api('/v1/jobs', { method: 'POST', json: job, headers: { 'idempotency-key': key } })
    ).json()) as { id: string };
    const b = (await (
      await t.api('/v1/jobs', { method: 'POST', json: job, headers: { 'idempotency-key': key }, key: other.api_key })
    ).json()) as { id: string };
    expect(a.id).not.toBe(b.id);
  });

  it('replays the stored job for a repeat that the changed configuration would refuse, and refuses a new request', async () => {
    // The callback allow-list changed between a request and its repeat, as a deploy between a partner's
    // request and its retry might change it. Refusing the repeat would tell the partner that nothing was
    // created, and a resubmission under a new key would create the job twice.
    const after = await startTestService({ db: t.db });
    try {
      const key = crypto.randomUUID();
      const body = { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: 'http://127.0.0.1:9/hook' };
      const first = await t.api('/v1/jobs', { method: 'POST', headers: { 'idempotency-key': key }, json: body });
      expect(first.status).toBe(202);
      const created = (await first.json()) as { id: string };

      const repeat = await after.api('/v1/jobs', {
        method: 'POST',
        key: t.tenant.api_key,
        headers: { 'idempotency-key': key },
        json: body,
      });
      const text = await repeat.text();
      expect(repeat.status, text).toBe(202);
      expect(repeat.headers.get('idempotent-replayed')).toBe('true');
      expect((JSON.parse(text) as { id: string }).id).toBe(created.id);

      // The same body under a new key is a new request, and the new configuration refuses it.
      const fresh = await after.api('/v1/jobs', {
        method: 'POST',
        key: t.tenant.api_key,
        headers: { 'idempotency-key': crypto.randomUUID() },
        json: body,
      });
      expect(fresh.status).toBe(422);
    } finally {
      await after.stop();
    }
  });

  // Two different bodies must never count as the same request. JSON that the schema or the database would
  // not keep as sent (a `__proto__` key, which object schemas drop; a number beyond double range, which
  // parses to Infinity and is stored as null) is refused with 422, so it can neither be stored changed nor
  // make a different body look like a replay.
  it.each([
    ['a __proto__ metadata key', '{"__proto__":{"x":1},"b":2}', '{"b":2}'],
    ['an out-of-range number', '{"a":1e400}', '{"a":null}'],
  ])('does not replay a different body after %s', async (_name, firstMeta, secondMeta) => {
    const key = crypto.randomUUID();
    const post = (body: string) =>
      fetch(`${t.url}/v1/jobs`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${t.tenant.api_key}`,
          'content-type': 'application/json',
          'idempotency-key': key,
        },
        body,
      });
    const first = await post(`{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":${firstMeta}}`);
    const firstText = await first.text();
    expect(first.status, firstText).toBe(422);
    expect((JSON.parse(firstText) as { type: string }).type).toBe('https://longhaul.dev/problems/validation-error');
    const second = await post(`{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":${secondMeta}}`);
    const text = await second.text();
    // The first was refused and created nothing: the second, a different body, is a new job, not a replay.
    expect(second.headers.get('idempotent-replayed'), `${second.status} ${text}`).toBeNull();
  });
});

describe('reading, listing and cancelling', () => {
  it("hides other tenants' jobs behind 404", async () => {
    const other = await t.newTenant();
    const created = (await (await t.api('/v1/jobs', { method: 'POST', json: job })).json()) as { id: string };
    expect((await t.api(`/v1/jobs/${created.id}`, { key: other.api_key })).status).toBe(404);
    expect((await t.api(`/v1/jobs/${created.id}/cancel`, { method: 'POST', key: other.api_key })).status).toBe(404);
    const list = (await (await t.api('/v1/jobs', { key: other.api_key })).json()) as { data: unknown[] };
    expect(list.data).toHaveLength(0);
  });

  it('answers 404 for an id that is not a UUID', async () => {
    const res = await t.api('/v1/jobs/not-a-uuid');
    expect(res.status).toBe(404);
  });

  it('pages newest first with a cursor that is stable under inserts', async () => {
    const tenant = await t.newTenant();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = (await (await t.api('/v1/jobs', { method: 'POST', json: job, key: tenant.api_key })).json()) as {
        id: string;
      };
      ids.push(r.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor === null ? '' : `&cursor=${cursor}`;
      const page = (await (await t.api(`/v1/jobs?limit=3${q}`, { key: tenant.api_key })).json()) as {
        data: Array<{ id: string }>;
        next_cursor: string | null;
      };
      seen.push(...page.data.map((j) => j.id));
      cursor = page.next_cursor;
      // A job submitted mid-way must not shift the pages.
      if (seen.length === 3) await t.api('/v1/jobs', { method: 'POST', json: job, key: tenant.api_key });
    } while (cursor !== null);
    expect(seen).toEqual([...ids].reverse());
  });

  it('filters by status, by type and by both, each page of a filtered list by its cursor', async () => {
    // One tenant with jobs of every status and three types, so each filter has something to leave out.
    const tenant = await t.newTenant();
    const paths: Record<JobStatus, JobStatus[]> = {
      PENDING: [],
      RUNNING: ['RUNNING'],
      COMPLETED: ['RUNNING', 'COMPLETED'],
      FAILED: ['RUNNING', 'FAILED'],
      CANCELLED: ['CANCELLED'],
    };
    const types = [
      ['synthetic', { chunks: 2, chunk_ms: 1 }],
      ['counted', { chunks: 2, chunk_ms: 1 }],
      ['stalls', { ms: 1 }],
    ] as const;
    const all: Array<{ id: string; type: string; status: JobStatus }> = [];
    for (let i = 0; i < 2 * JOB_STATUSES.length * types.length; i++) {
      const status = JOB_STATUSES[i % JOB_STATUSES.length] as JobStatus;
      const [type, input] = types[Math.floor(i / 2) % types.length] as (typeof types)[number];
      const res = await t.api('/v1/jobs', { method: 'POST', json: { type, input }, key: tenant.api_key });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      for (const to of paths[status]) expect(await transition(t.service.pool, id, to)).toBeDefined();
      all.unshift({ id, type, status });
    }
    /** Every page of a query, following next_cursor (bounded, so a cursor that does not advance fails). */
    const pages = async (query: string, limit: number): Promise<string[][]> => {
      const out: string[][] = [];
      let cursor: string | null = null;
      do {
        const res = await t.api(`/v1/jobs?limit=${limit}${query}${cursor === null ? '' : `&cursor=${cursor}`}`, {
          key: tenant.api_key,
        });
        expect(res.status).toBe(200);
        const page = (await res.json()) as { data: Array<{ id: string }>; next_cursor: string | null };
        out.push(page.data.map((j) => j.id));
        cursor = page.next_cursor;
      } while (cursor !== null && out.length <= all.length);
      return out;
    };
    const ids = (keep: (j: (typeof all)[number]) => boolean) => all.filter(keep).map((j) => j.id);

    expect((await pages('', 100)).flat()).toEqual(ids(() => true));
    for (const status of JOB_STATUSES) {
      expect((await pages(`&status=${status}`, 100)).flat(), status).toEqual(ids((j) => j.status === status));
    }
    for (const [type] of types) {
      expect((await pages(`&type=${type}`, 100)).flat(), type).toEqual(ids((j) => j.type === type));
      for (const status of JOB_STATUSES) {
        const want = ids((j) => j.type === type && j.status === status);
        expect((await pages(`&status=${status}&type=${type}`, 100)).flat(), `${status} ${type}`).toEqual(want);
      }
    }
    // Paged, a filtered list is the same list, cut into full pages with no empty one left over.
    const synthetic = await pages('&type=synthetic', 2);
    expect(synthetic.map((p) => p.length)).toEqual([2, 2, 2, 2, 2]);
    expect(synthetic.flat()).toEqual(ids((j) => j.type === 'synthetic'));
    const unfiltered = await pages('', 4);
    expect(unfiltered.map((p) => p.length)).toEqual([4, 4, 4, 4, 4, 4, 4, 2]);
    expect(unfiltered.flat()).toEqual(ids(() => true));
    const running = await pages('&status=RUNNING', 5);
    expect(running.map((p) => p.length)).toEqual([5, 1]);
    expect(running.flat()).toEqual(ids((j) => j.status === 'RUNNING'));
  });

  it('rejects bad list queries', async () => {
    expect((await t.api('/v1/jobs?status=NOPE')).status).toBe(422);
    expect((await t.api('/v1/jobs?limit=0')).status).toBe(422);
    expect((await t.api('/v1/jobs?cursor=garbage')).status).toBe(400);
  });

  // Date.parse takes both 30 February and year 0000; Postgres's timestamptz refuses them. A forged cursor
  // naming one is a cursor this API did not return: 400, not 500.
  it.each([
    ['February 30', '2024-02-30T00:00:00.000000Z'],
    ['April 31', '2024-04-31T12:00:00.000000Z'],
    ['year 0000', '0000-01-01T00:00:00.000000Z'],
  ])('a cursor naming %s answers 400 bad-request, not 500', async (_name, at) => {
    const cursor = Buffer.from(`${at}|00000000-0000-0000-0000-000000000000`).toString('base64url');
    const res = await fetch(`${t.url}/v1/jobs?cursor=${cursor}`, {
      headers: { authorization: `Bearer ${t.tenant.api_key}` },
    });
    const text = await res.text();
    expect(res.status, text).toBe(400);
    expect((JSON.parse(text) as { type: string }).type).toBe('https://longhaul.dev/problems/bad-request');
  });

  it('cancels a PENDING job at once, and refuses to cancel a finished one', async () => {
    const created = (await (await t.api('/v1/jobs', { method: 'POST', json: job })).json()) as { id: string };
    const res = await t.api(`/v1/jobs/${created.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe('CANCELLED');
    const again = await t.api(`/v1/jobs/${created.id}/cancel`, { method: 'POST' });
    expect(again.status).toBe(409);
  });

  it('asks a RUNNING job to stop', async () => {
    const created = (await (await t.api('/v1/jobs', { method: 'POST', json: job })).json()) as { id: string };
    await t.service.pool.query(`UPDATE jobs SET status = 'RUNNING' WHERE id = $1`, [created.id]);
    const res = await t.api(`/v1/jobs/${created.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(202);
    const { rows } = await t.service.pool.query(
      'SELECT cancel_requested_at IS NOT NULL AS asked FROM jobs WHERE id = $1',
      [created.id],
    );
    expect(rows[0]).toEqual({ asked: true });
  });
});

describe('errors and operations', () => {
  it('answers unknown routes with a 404 problem', async () => {
    const res = await fetch(`${t.url}/nope`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('reports health and readiness', async () => {
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
  });
});
