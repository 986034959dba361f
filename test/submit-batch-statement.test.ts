/**
 * A submission batch is one statement with pg-boss's own insert statement embedded in it
 * (src/jobs/submit.ts, batchStatement). pg-boss's statement as this version builds it must embed (else
 * every batch would take the slower transactional path), shapes it cannot take are refused, and a pg-boss
 * statement that does not enqueue every job the batch created fails the whole statement: nothing written.
 * A batch of POST /v1/jobs/batch is one statement too when all its jobs are new and its tenant has no
 * limits; otherwise that statement writes nothing and the transactional path settles the batch.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { captureBossSql, type Pool } from '../src/db/pool.ts';
import { fingerprint, keyLockId } from '../src/jobs/idempotency.ts';
import { QUEUES } from '../src/jobs/queues.ts';
import { batchStatement, JobSubmitter, type SubmitRequest } from '../src/jobs/submit.ts';
import { setLimits } from '../src/tenants/limits.ts';
import { DEFAULT_BACKOFF } from '../packages/sdk/src/index.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

async function bossInsertSql(): Promise<string> {
  const captured = await captureBossSql((db) =>
    t.service.boss.insert(QUEUES.jobs, [{ id: randomUUID(), data: {} }], { db, returnId: true }),
  );
  return captured.at(-1)?.text ?? '';
}

/** The batch statement's parameters for one job `id` whose pg-boss payload is `payload`. */
function params(id: string, payload: unknown[]): unknown[] {
  const one = (v: unknown) => [v];
  return [
    one(id),
    one(t.tenant.id),
    one('synthetic'),
    one(JSON.stringify({ chunks: 1, chunk_ms: 0 })),
    one(null),
    one(null),
    one(3),
    one(null),
    one(null),
    one(null),
    one(null),
    one(0),
    one(null),
    one(null),
    one(null),
    86_400,
    one(null),
    JSON.stringify(payload),
  ];
}

it("embeds pg-boss's insert statement as this pg-boss version builds it", async () => {
  const statement = batchStatement(await bossInsertSql());
  expect(statement?.text).toContain('pg_notify');
});

it('refuses a pg-boss statement of another shape', async () => {
  const sql = await bossInsertSql();
  expect(batchStatement(sql.replace('$1', '$2'))).toBeUndefined();
  expect(batchStatement(`${sql} AND $2 IS NULL`)).toBeUndefined();
  expect(batchStatement(sql.replace('WITH ins AS', 'WITH lh_ins AS'))).toBeUndefined();
  expect(batchStatement(`WITH a AS (SELECT $1::text) UPDATE x SET y = 1`)).toBeUndefined();
  expect(batchStatement(`WITH a AS (SELECT $1::text`)).toBeUndefined();
  expect(batchStatement(`INSERT INTO x SELECT * FROM json_to_recordset($1::text::json) AS r(id uuid)`)).toBeDefined();
});

it("embeds pg-boss's statement without its NOTIFY (a queue whose notify is off) and runs it", async () => {
  const insert = /WITH ins AS \(([\s\S]*)\),\s*notified AS/.exec(await bossInsertSql())?.[1];
  const statement = batchStatement(insert ?? '');
  if (statement === undefined) throw new Error('not embeddable');
  const id = randomUUID();
  const written = await t.service.pool.query({ ...statement, values: params(id, [{ id, data: { jobId: id } }]) });
  expect(written.rows[0]).toMatchObject({ locked: true, created: true, id });
  const { rows } = await t.service.pool.query('SELECT 1 FROM pgboss.job WHERE id = $1', [id]);
  expect(rows).toHaveLength(1);
});

it('writes the jobs and their pg-boss jobs of a batch in one statement', async () => {
  const { pool: watched, names } = watchedPool();
  const submitter = new JobSubmitter(watched, t.service.boss);
  const outcomes = await Promise.all(
    Array.from({ length: 5 }, (_, i) =>
      submitter.submit({
        tenantId: t.tenant.id,
        type: 'synthetic',
        input: { chunks: 1, chunk_ms: 0 },
        metadata: { i },
        callbackUrl: null,
        maxAttempts: 3,
        backoff: DEFAULT_BACKOFF,
        idempotency: null,
      }),
    ),
  );
  const ids = outcomes.map((o) => (o.kind === 'created' ? o.job.id : ''));
  const { rows } = await t.service.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND id = ANY($2::uuid[])`,
    [QUEUES.jobs, ids],
  );
  expect(rows[0]?.n).toBe(5);
  expect(names).toEqual([expect.stringMatching(/^longhaul-submit-batch-/)]);
});

it('writes nothing when pg-boss does not enqueue every job the batch created', async () => {
  const statement = batchStatement(await bossInsertSql());
  if (statement === undefined) throw new Error('not embeddable');
  const taken = randomUUID();
  await t.service.boss.insert(QUEUES.jobs, [{ id: taken, data: {} }]);
  const id = randomUUID();
  // The job's pg-boss execution takes an id pg-boss already holds: its insert skips it (ON CONFLICT).
  const payload = [{ id: taken, data: { jobId: id } }];
  await expect(t.service.pool.query({ ...statement, values: params(id, payload) })).rejects.toMatchObject({
    code: 'LH001',
  });
  const { rows } = await t.service.pool.query('SELECT 1 FROM jobs WHERE id = $1', [id]);
  expect(rows).toHaveLength(0);
  const ok = randomUUID();
  const written = await t.service.pool.query({ ...statement, values: params(ok, [{ id: ok, data: { jobId: ok } }]) });
  expect(written.rows[0]).toMatchObject({ locked: true, created: true, id: ok });
});

/** A pool that records the name of each statement run through its query() (a transaction's run on a client). */
function watchedPool(): { pool: Pool; names: unknown[] } {
  const pool = t.service.pool;
  const names: unknown[] = [];
  const watched = Object.create(pool, {
    query: {
      value: (q: unknown, v?: unknown[]) => (names.push((q as { name?: unknown }).name), pool.query(q as string, v)),
    },
  }) as Pool;
  return { pool: watched, names };
}

const request = (tenantId: string, chunkMs: number, key?: string): SubmitRequest => {
  const input = { chunks: 1, chunk_ms: chunkMs };
  return {
    tenantId,
    type: 'synthetic',
    input,
    metadata: null,
    callbackUrl: null,
    maxAttempts: 3,
    backoff: DEFAULT_BACKOFF,
    idempotency: key === undefined ? null : { key, fingerprint: fingerprint({ type: 'synthetic', input }) },
  };
};

async function written(ids: string[]): Promise<{ jobs: number; boss: number }> {
  const { rows } = await t.service.pool.query<{ jobs: number; boss: number }>(
    `SELECT (SELECT count(*)::int FROM jobs WHERE id = ANY($1::uuid[])) AS jobs,
            (SELECT count(*)::int FROM pgboss.job WHERE name = $2 AND id = ANY($1::uuid[])) AS boss`,
    [ids, QUEUES.jobs],
  );
  return rows[0] ?? { jobs: -1, boss: -1 };
}

it('writes a batch of new jobs and their pg-boss jobs in one statement', async () => {
  const { pool, names } = watchedPool();
  const submitter = new JobSubmitter(pool, t.service.boss);
  const out = await submitter.submitAll(t.tenant.id, [
    request(t.tenant.id, 1, randomUUID()),
    request(t.tenant.id, 2),
    request(t.tenant.id, 3, randomUUID()),
  ]);
  if (out.kind !== 'accepted') throw new Error(out.kind);
  expect(out.outcomes.map((o) => o.kind)).toEqual(['created', 'created', 'created']);
  const ids = out.outcomes.map((o) => o.job.id);
  const { rows } = await t.service.pool.query<{ id: string; ms: number }>(
    `SELECT id, (input->>'chunk_ms')::int AS ms FROM jobs WHERE id = ANY($1::uuid[])`,
    [ids],
  );
  expect(ids.map((id) => rows.find((r) => r.id === id)?.ms)).toEqual([1, 2, 3]);
  expect(await written(ids)).toEqual({ jobs: 3, boss: 3 });
  expect(names).toEqual([expect.stringMatching(/^longhaul-submit-all-/)]);
});

it('settles a batch the one statement cannot (a replay, a limited tenant) by the transaction, the statement undone', async () => {
  const { pool, names } = watchedPool();
  const submitter = new JobSubmitter(pool, t.service.boss);
  const key = randomUUID();
  const first = await submitter.submitAll(t.tenant.id, [request(t.tenant.id, 1, key)]);
  if (first.kind !== 'accepted') throw new Error(first.kind);
  names.length = 0;
  const again = await submitter.submitAll(t.tenant.id, [request(t.tenant.id, 902), request(t.tenant.id, 1, key)]);
  if (again.kind !== 'accepted') throw new Error(again.kind);
  expect(again.outcomes.map((o) => o.kind)).toEqual(['created', 'replayed']);
  expect(again.outcomes[1]?.job.id).toBe(first.outcomes[0]?.job.id);
  expect(names).toEqual([expect.stringMatching(/^longhaul-submit-all-/)]);
  const { rows } = await t.service.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND input->>'chunk_ms' = '902'`,
    [t.tenant.id],
  );
  expect(rows[0]?.n).toBe(1);

  const limited = await t.newTenant();
  await setLimits(t.service.pool, limited.id, { max_pending_jobs: 1 });
  const refused = await submitter.submitAll(limited.id, [request(limited.id, 1), request(limited.id, 2)]);
  expect(refused.kind).toBe('limited');
  const { rows: none } = await t.service.pool.query(
    'SELECT 1 FROM jobs WHERE tenant_id = $1 UNION ALL SELECT 1 FROM pgboss.job WHERE group_id = $1::text',
    [limited.id],
  );
  expect(none).toHaveLength(0);
});

it("gives jobs time-ordered ids (UUIDv7), so a batch's entries land together in the indexes keyed by id", async () => {
  const submitter = new JobSubmitter(t.service.pool, t.service.boss);
  const out = await submitter.submitAll(
    t.tenant.id,
    Array.from({ length: 50 }, (_, i) => request(t.tenant.id, i)),
  );
  if (out.kind !== 'accepted') throw new Error(out.kind);
  const ids = out.outcomes.map((o) => o.job.id);
  expect(ids.every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id))).toBe(
    true,
  );
  expect([...ids].sort()).toEqual(ids);
  const ms = parseInt(ids[0]?.replaceAll('-', '').slice(0, 12) ?? '', 16);
  expect(Math.abs(ms - Date.now())).toBeLessThan(60_000);
});

it('refuses a batch with a key another writer holds (in flight), writing none of it', async () => {
  const submitter = new JobSubmitter(t.service.pool, t.service.boss);
  const key = randomUUID();
  const holder = await t.service.pool.connect();
  try {
    await holder.query('SELECT pg_advisory_lock($1)', [keyLockId(t.tenant.id, key)]);
    const out = await submitter.submitAll(t.tenant.id, [request(t.tenant.id, 903), request(t.tenant.id, 904, key)]);
    expect(out).toEqual({ kind: 'in-flight', indexes: [1] });
  } finally {
    await holder.query('SELECT pg_advisory_unlock_all()');
    holder.release();
  }
  const { rows } = await t.service.pool.query(
    `SELECT 1 FROM jobs WHERE tenant_id = $1 AND input->>'chunk_ms' IN ('903', '904')`,
    [t.tenant.id],
  );
  expect(rows).toHaveLength(0);
});
