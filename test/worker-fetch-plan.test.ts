/**
 * The fetch runs on a connection that plans each prepared statement once, for any parameters
 * (src/worker/fetcher.ts FETCH_SESSION): that one plan must serve a backlog as well as the idle queue
 * whose statistics it may have been made from. Made in a new database, and from the statistics of a
 * service at rest (finished jobs kept, nothing queued), the generic plans of both fetches (plain and
 * fair) must find the fetched executions' jobs by primary key, never by walking the jobs (a backlog
 * fills every index of theirs; the fair fetch reads the RUNNING ones from running_jobs, sql/100, and
 * each of them by primary key), and read no table whole.
 */
import { PgBoss } from 'pg-boss';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { claimFetchedSql } from '../src/jobs/lifecycle.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { QUEUES } from '../src/jobs/queues.ts';
import { fairFetchSql, plainFetchSql, queueTable, settleFetchedSql } from '../src/worker/fair-fetch.ts';
import { FETCH_SESSION } from '../src/worker/fetcher.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let client: pg.Client;
let table: string;

beforeAll(async () => {
  db = await createTestDatabase();
  const boss = new PgBoss({ connectionString: db.url, supervise: false, schedule: false });
  await boss.start();
  table = await queueTable(boss, QUEUES.jobs);
  await boss.stop({ graceful: false });
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  for (const [name, value] of Object.entries(FETCH_SESSION)) await client.query(`SET ${name} = ${value}`);
});
afterAll(async () => {
  await client.end();
  await db.drop();
});

async function genericPlan(fetch: string, params: number): Promise<string> {
  const { rows } = await client.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (GENERIC_PLAN) ${claimFetchedSql(fetch, params + 1, settleFetchedSql(table))}`,
  );
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

function expectIndexedReads(plan: string, fair: boolean): void {
  // Every index of jobs read is its primary key (the rest is by the address of the row version just read).
  const jobIndexes = [...plan.matchAll(/(?:using|Bitmap Index Scan on) (jobs_\w+)/g)].map((m) => m[1]);
  expect(jobIndexes.length).toBeGreaterThan(0);
  expect(jobIndexes.filter((index) => index !== 'jobs_pkey')).toEqual([]);
  expect(plan).not.toContain('Seq Scan');
  expect(plan).toMatch(/Tid Scan on jobs /);
  expect(/ on running_jobs\b/.test(plan)).toBe(fair);
}

const FETCHES = [
  ['plain', () => plainFetchSql(table), 2],
  ['fair', () => fairFetchSql(table), 4],
] as const;

it.each(FETCHES)('the %s fetch’s one plan, made in a new database', async (name, sql, params) => {
  expectIndexedReads(await genericPlan(sql(), params), name === 'fair');
});

it.each(FETCHES)('the %s fetch’s one plan, made from those of a service at rest', async (name, sql, params) => {
  const tenant = await createTenant(client, `plans-${name}`);
  await client.query(
    `INSERT INTO jobs (id, tenant_id, type, input, max_attempts, status, started_at, finished_at)
     SELECT gen_random_uuid(), $1, 'synthetic', '{}', 3, 'COMPLETED', now(), now() FROM generate_series(1, 5000)`,
    [tenant.id],
  );
  await client.query('ANALYZE');
  expectIndexedReads(await genericPlan(sql(), params), name === 'fair');
});
