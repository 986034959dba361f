/**
 * Where longhaul relies on pg-boss details that are not its public API, compare them with what pg-boss
 * actually does, so an upgrade that changes them fails here rather than silently in production.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { captureBossSql } from '../src/db/pool.ts';
import { QUEUES } from '../src/jobs/queues.ts';
import {
  CANDIDATE_CONDITIONS,
  CLAIM_SET_SQL,
  fetchExecutions,
  plainFetchSql,
  queueTable,
  FETCHED_COLUMNS,
} from '../src/worker/fair-fetch.ts';
import { deleteExecutionsQuery, EXECUTION_FENCE_SQL } from '../src/worker/executions.ts';
import { BOSS_CHANNEL_SQL } from '../src/worker/fetcher.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let boss: PgBoss;

beforeAll(async () => {
  db = await createTestDatabase();
  // As the service runs it: without pg-boss's tracing, whose fetch returns a trace context too.
  boss = new PgBoss({
    connectionString: db.url,
    supervise: false,
    schedule: false,
    useListenNotify: true,
    openTelemetry: { enabled: false },
  });
  await boss.start();
});
afterAll(async () => {
  await boss.stop({ graceful: false });
  await db.drop();
});

it('the worker LISTENs on the channel pg-boss notifies when it inserts a job', async () => {
  const sql =
    (await captureBossSql((db) => boss.insert(QUEUES.jobs, [{ data: { jobId: 'drift' } }], { db }))).at(-1)?.text ?? '';
  // pg_notify((<channel expression>), '<queue name>')
  const notify = new RegExp(String.raw`pg_notify\(\s*\(([\s\S]+?)\)\s*,\s*'${QUEUES.jobs}'\s*\)`).exec(sql);
  if (notify?.[1] === undefined) throw new Error(`pg-boss's insert no longer notifies the queue by name:\n${sql}`);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ theirs: string; ours: string }>(
      `SELECT ${notify[1]} AS theirs, ${BOSS_CHANNEL_SQL} AS ours`,
    );
    expect(rows[0]?.theirs).toMatch(/^pgboss_/);
    expect(rows[0]?.ours).toBe(rows[0]?.theirs);
  } finally {
    await client.end();
  }
});

const flat = (sql: string) => sql.replace(/\s+/g, ' ').trim();

it('the fair fetch claims with the conditions, writes and columns of pg-boss’s own fetch', async () => {
  const table = await queueTable(boss, QUEUES.jobs);
  const sql = flat(
    (
      await captureBossSql((db) =>
        boss.fetch(QUEUES.jobs, {
          batchSize: 2,
          includeMetadata: true,
          groupConcurrency: { default: 2, tiers: { t: 1 } },
          db,
        }),
      )
    ).at(-1)?.text ?? '',
  );
  // Which executions pg-boss may take: its candidate CTE's conditions, beside the queue and the group limit.
  const next =
    /next AS \( SELECT .*? FROM pgboss\.(\w+) j WHERE (.*?) ORDER BY j\.priority desc, j\.created_on LIMIT/.exec(sql);
  if (next?.[2] === undefined) throw new Error(`pg-boss's fetch no longer selects its candidates as it did:\n${sql}`);
  expect(next[1]).toBe(table);
  const conditions = next[2].split(' AND ');
  expect(conditions.filter((c) => !c.startsWith('(j.group_id IS NULL OR '))).toEqual([
    `j.name = '${QUEUES.jobs}'`,
    ...CANDIDATE_CONDITIONS,
  ]);
  // What it writes when it claims, and what it returns: ours is a part of it, under the same names (the
  // values are compared by the last test).
  expect(sql).toContain(`UPDATE pgboss.${table} j SET ${flat(CLAIM_SET_SQL)} WHERE name = '${QUEUES.jobs}'`);
  const names = (columns: string) => columns.split(', ').map((c) => /"?(\w+)"?$/.exec(c)?.[1]);
  const returned = names(sql.slice(sql.lastIndexOf(' RETURNING j.') + ' RETURNING j.'.length));
  expect(returned).toEqual(expect.arrayContaining(names(FETCHED_COLUMNS)));
});

it('the plain fetch locks the candidates of pg-boss’s own fetch without group limits', async () => {
  const table = await queueTable(boss, QUEUES.jobs);
  // Spaces inside parentheses differ by layout only.
  const norm = (sql: string) => flat(sql).replace(/\( /g, '(').replace(/ \)/g, ')');
  const theirs = norm(
    (await captureBossSql((db) => boss.fetch(QUEUES.jobs, { batchSize: 3, includeMetadata: true, db }))).at(-1)?.text ??
      '',
  );
  const ours = norm(plainFetchSql(table).replaceAll('$1', `'${QUEUES.jobs}'`).replaceAll('$2', '3'));
  // pg-boss selects and locks its candidates, then updates them; ours returns the columns the worker
  // reads of the rows it locks (checked against pg-boss's by the test above), and settles them later.
  const next = /^WITH next AS \((SELECT j\.id FROM .*)\) UPDATE /.exec(theirs);
  if (next?.[1] === undefined)
    throw new Error(`pg-boss's fetch no longer selects its candidates as it did:\n${theirs}`);
  expect(ours).toBe(next[1].replace('SELECT j.id FROM', `SELECT ${flat(FETCHED_COLUMNS)} FROM`));
});

it('a claimed job’s execution is deleted under the fence of pg-boss’s own complete', async () => {
  const table = await queueTable(boss, QUEUES.jobs);
  const attempts = [
    { id: randomUUID(), retryCount: 0 },
    { id: randomUUID(), retryCount: 2 },
  ];
  const [complete, ...more] = await captureBossSql(
    (db) => boss.complete(QUEUES.jobs, attempts, null, { db }),
    [{ count: '0', ids: [] }],
  );
  if (complete === undefined || more.length > 0) throw new Error('pg-boss’s complete is no longer one statement');
  // UPDATE <table> SET … WHERE <fence> RETURNING id, its parameters $1 queue, $2 ids, $4 attempt pairs.
  const update = /UPDATE pgboss\.(\w+) SET .*? WHERE (.*?) RETURNING id/.exec(flat(complete.text));
  if (update?.[2] === undefined) throw new Error(`pg-boss’s complete no longer updates as it did:\n${complete.text}`);
  expect(update[1]).toBe(table);
  const ours = deleteExecutionsQuery(table, attempts);
  // Its conditions (it names the state twice: once unfenced, once in the fence).
  expect([...new Set(update[2].split(' AND '))]).toEqual(
    flat(EXECUTION_FENCE_SQL).replace('$3::text[]', '$4::text[]').split(' AND '),
  );
  const [name, ids, , pairs] = complete.values;
  expect(ours.values).toEqual([name, ids, pairs]);
});

it.each([
  ['fair', 'new', { cap: 2, caps: {} }],
  ['plain', 'new', undefined],
  ['fair', 'retried', { cap: 2, caps: {} }],
  ['plain', 'retried', undefined],
] as const)(
  'the %s fetch leaves a %s execution as pg-boss’s fetch does and returns the fields the worker reads as it does',
  async (name, kind, share) => {
    const table = await queueTable(boss, QUEUES.jobs);
    // A tenant of its own: the executions each case leaves active count against its cap.
    const group = { id: `drift-${name}-${kind}`, tier: `drift-${name}-${kind}` };
    const ids = [randomUUID(), randomUUID()];
    await boss.insert(QUEUES.jobs, [
      { id: ids[0], data: { jobId: 'drift-1' }, group },
      { id: ids[1], data: { jobId: 'drift-2' }, group },
    ]);
    // As pg-boss leaves an execution it retries: it had started, and counts the retry when fetched again.
    if (kind === 'retried')
      await boss
        .getDb()
        .executeSql(
          `UPDATE pgboss.${table} SET state = 'retry', started_on = now(), retry_count = 1 WHERE id = ANY($1)`,
          [ids],
        );
    const theirs = await boss.fetch(QUEUES.jobs, { batchSize: 1, includeMetadata: true });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const fetched = await fetchExecutions(client, table, QUEUES.jobs, 1, share, {
        owner: 'drift',
        seconds: 30,
        rooms: new Map(),
      });
      // Beside the fields, whether the statement claimed the job (it claims none here).
      const ours = fetched.map(({ claim, ...execution }) => {
        expect(claim).toBeNull();
        return execution;
      });
      expect(theirs).toHaveLength(1);
      expect(ours).toHaveLength(1);
      const [a, b] = [theirs[0], ours[0]];
      if (a === undefined || b === undefined) throw new Error('nothing fetched');
      expect(Object.keys(b).sort()).toEqual(['data', 'id', 'retryCount', 'retryLimit']);
      expect([b.retryCount, b.retryLimit]).toEqual([a.retryCount, a.retryLimit]);
      const { rows } = await client.query<{ same: boolean }>(
        `SELECT count(DISTINCT (state, retry_count, started_on IS NOT NULL, heartbeat_on IS NOT NULL))= 1 AS same
         FROM pgboss.${table} WHERE id = ANY($1::uuid[])`,
        [[a.id, b.id]],
      );
      expect(rows[0]?.same).toBe(true);
    } finally {
      await client.end();
    }
  },
);
