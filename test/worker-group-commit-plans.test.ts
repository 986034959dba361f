/**
 * The worker's group commits (checkpoints and completions) run prepared statements that find their jobs
 * by id, and Postgres keeps one generic plan of each after a few runs. Made from the statistics of a
 * new deployment's small `jobs` table (a few jobs finished), that plan reads the table whole, and goes
 * on doing so at every checkpoint once a backlog has come, until the next analyze. On the group commits'
 * connections (src/worker/settler.ts COMMIT_SESSION) the same statements find their jobs through the
 * primary key; the control shows the plan the settings guard against, with Postgres's defaults.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Queryable } from '../src/db/pool.ts';
import type { JobEventsPublisher } from '../src/jobs/events-publisher.ts';
import { completeAllQuery, writeCheckpoint, writeCheckpoints, type CheckpointWrite } from '../src/jobs/lifecycle.ts';
import type { WorkerMetrics } from '../src/worker/metrics.ts';
import { COMMIT_SESSION, Settler } from '../src/worker/settler.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const tenant = await createTenant(pool, 'plans');
  await pool.query(
    `INSERT INTO jobs (id, tenant_id, type, input, max_attempts, status, started_at, finished_at)
     SELECT gen_random_uuid(), $1, 'synthetic', '{}', 3, 'COMPLETED', now(), now() FROM generate_series(1, 30)`,
    [tenant.id],
  );
  await pool.query('VACUUM ANALYZE jobs');
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

/** The text of the statement `run` sends (to nothing). */
async function statementOf(run: (q: Queryable) => Promise<unknown>): Promise<string> {
  let text = '';
  const capture = {
    query: async (q: { text: string }) => {
      text = q.text;
      return { rows: [] };
    },
  } as unknown as Queryable;
  await run(capture);
  return text;
}

const write: CheckpointWrite = {
  jobId: '00000000-0000-7000-8000-000000000001',
  token: '00000000-0000-4000-8000-000000000002',
  cursor: 1,
  state: {},
  processed: 1,
  leaseSeconds: 30,
};

/** Each statement's text: the checkpoints' as their functions send them, the completions' as built. */
const STATEMENTS: Array<[string, () => Promise<string>]> = [
  ['the checkpoints of a group', () => statementOf((q) => writeCheckpoints(q, [write, write]))],
  ['one checkpoint', () => statementOf((q) => writeCheckpoint(q, write))],
  ['the completions of a group', async () => completeAllQuery([{ ...write, result: null }]).text],
];

async function genericPlan(text: string, settings: Record<string, string>): Promise<string> {
  const c = await pool.connect();
  try {
    await c.query('RESET ALL');
    for (const [name, value] of Object.entries(settings)) await c.query(`SET ${name} = ${value}`);
    const { rows } = await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN (GENERIC_PLAN) ${text}`);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await c.query('RESET ALL');
    c.release();
  }
}

for (const [what, statement] of STATEMENTS) {
  it(`${what}: the generic plan reads jobs through its primary key on the group commits' connections`, async () => {
    const text = await statement();
    const plan = await genericPlan(text, COMMIT_SESSION);
    expect(plan).not.toMatch(/Seq Scan on jobs/);
    expect(plan).toMatch(/jobs_pkey/);
    // The control: with Postgres's defaults the same plan reads the whole table.
    expect(await genericPlan(text, {})).toMatch(/Seq Scan on jobs/);
  });
}

it('the group commits run on connections with those settings once the settler is open', async () => {
  const settler = new Settler({
    pool,
    boss: {} as never,
    events: {} as JobEventsPublisher,
    metrics: {} as WorkerMetrics,
    maxLeaseLosses: 3,
  });
  const seqscan = async () =>
    (await settler.groupCommits().query<{ enable_seqscan: string }>('SHOW enable_seqscan')).rows[0]?.enable_seqscan;
  expect(await seqscan()).toBe('on');
  settler.open(db.url);
  try {
    expect(await seqscan()).toBe('off');
  } finally {
    await settler.close();
  }
});
