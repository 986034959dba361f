/**
 * Where longhaul relies on pg-boss details that are not its public API, compare them with what pg-boss
 * actually does, so an upgrade that changes them fails here rather than silently in production.
 */
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { captureBossSql } from '../src/db/pool.ts';
import { QUEUES } from '../src/jobs/queues.ts';
import { BOSS_CHANNEL_SQL } from '../src/worker/fetcher.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let boss: PgBoss;

beforeAll(async () => {
  db = await createTestDatabase();
  boss = new PgBoss({ connectionString: db.url, supervise: false, schedule: false, useListenNotify: true });
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
