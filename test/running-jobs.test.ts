/**
 * A claim (PENDING → RUNNING) changes no indexed column of `jobs`, so Postgres writes it as a HOT
 * update and adds no index entry (sql/100): no index names `status`; `phase` (PENDING and RUNNING both
 * ACTIVE) is indexed in its place, and `running_jobs`, kept by a trigger on every status change, holds
 * exactly the RUNNING jobs. The reads that need the RUNNING jobs (lists by status, the lease sweep, the
 * tenants' demand) read that table and stay bounded by it, however many jobs wait.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cancelIfRunning,
  failIfActive,
  lockExpiredLeases,
  replayIfFailed,
  returnToPendingIfRunning,
  startIfPending,
  tenantDemand,
} from '../src/jobs/lifecycle.ts';
import { listJobs } from '../src/jobs/repository.ts';
import { QUEUES } from '../src/jobs/queues.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { fetchExecutions, queueTable } from '../src/worker/fair-fetch.ts';
import { insertJob, leasedTo, secondsFromNow } from './support/jobs.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
  tenantId = (await createTenant(pool, 'running-jobs')).id;
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

/** running_jobs beside the RUNNING jobs, each sorted. */
async function runningSets(): Promise<[string[], string[]]> {
  const { rows: table } = await pool.query<{ id: string }>('SELECT job_id AS id FROM running_jobs ORDER BY 1');
  const { rows: jobs } = await pool.query<{ id: string }>(`SELECT id FROM jobs WHERE status = 'RUNNING' ORDER BY 1`);
  return [table.map((r) => r.id), jobs.map((r) => r.id)];
}

async function expectRunning(ids: string[]): Promise<void> {
  const [table, jobs] = await runningSets();
  expect(table).toEqual([...ids].sort());
  expect(jobs).toEqual(table);
}

/** Runs `body` in a transaction and answers what it did to `jobs`: rows updated, and how many of them HOT. */
async function updatesOf(body: (c: pg.PoolClient) => Promise<void>): Promise<{ updated: number; hot: number }> {
  const c = await pool.connect();
  try {
    // The counters also hold the connection's earlier transactions not yet reported: read them around `body`.
    const counters = async () =>
      (
        await c.query<{ updated: number; hot: number }>(
          `SELECT pg_stat_get_xact_tuples_updated('jobs'::regclass)::int AS updated,
                  pg_stat_get_xact_tuples_hot_updated('jobs'::regclass)::int AS hot`,
        )
      ).rows[0] as { updated: number; hot: number };
    await c.query('BEGIN');
    const before = await counters();
    await body(c);
    const after = await counters();
    await c.query('COMMIT');
    return { updated: after.updated - before.updated, hot: after.hot - before.hot };
  } finally {
    c.release();
  }
}

describe('running_jobs', () => {
  it('holds exactly the RUNNING jobs through every status change, by whatever statement makes it', async () => {
    await pool.query('DELETE FROM jobs');
    const a = await insertJob(pool, tenantId);
    const b = await insertJob(pool, tenantId);
    await expectRunning([]);
    await startIfPending(pool, a);
    await startIfPending(pool, b);
    await expectRunning([a, b]);
    await returnToPendingIfRunning(pool, a, { announce: false });
    await expectRunning([b]);
    await startIfPending(pool, a);
    await cancelIfRunning(pool, b, { announce: false });
    await expectRunning([a]);
    const error = { kind: 'failure' as const, message: 'no', attempt: 1, at: new Date(0).toISOString() };
    await failIfActive(pool, a, { error, announce: false });
    await expectRunning([]);
    await replayIfFailed(pool, a, { execution: randomUUID(), from: 'start' });
    await startIfPending(pool, a);
    await expectRunning([a]);

    // By hand too: an insert, an update and a delete of a RUNNING job.
    const c = await insertJob(pool, tenantId, leasedTo(randomUUID()));
    await expectRunning([a, c]);
    await pool.query(`UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id = $1`, [a]);
    await expectRunning([c]);
    await pool.query('DELETE FROM jobs WHERE id = $1', [c]);
    await expectRunning([]);
  });

  it('lets a claim, locked or by the fetch, and a retry update the row HOT, with no index entry', async () => {
    await pool.query('DELETE FROM jobs');
    const id = await insertJob(pool, tenantId);
    expect(await updatesOf(async (c) => void (await startIfPending(c, id)))).toEqual({ updated: 1, hot: 1 });
    expect(await updatesOf(async (c) => void (await returnToPendingIfRunning(c, id, { announce: false })))).toEqual({
      updated: 1,
      hot: 1,
    });

    // The fetch's claim of its execution's job, in the one statement that fetches (src/worker/fair-fetch.ts).
    const boss = new PgBoss({ connectionString: db.url, supervise: false, schedule: false });
    await boss.start();
    try {
      const table = await queueTable(boss, QUEUES.jobs);
      const fresh = await insertJob(pool, tenantId);
      await boss.send(QUEUES.jobs, { jobId: fresh }, { id: fresh, group: { id: tenantId } } as never);
      let claimed: unknown;
      const lease = { owner: 'running-jobs-test', seconds: 30, rooms: new Map([['synthetic', 1]]) };
      expect(
        await updatesOf(async (c) => {
          claimed = (await fetchExecutions(c, table, QUEUES.jobs, 1, undefined, lease))[0]?.claim;
        }),
      ).toEqual({ updated: 1, hot: 1 });
      expect(claimed).toMatchObject({ id: fresh, status: 'RUNNING' });
      await expectRunning([fresh]);
    } finally {
      await boss.stop({ graceful: false });
    }
  });
});

describe('reads of the RUNNING jobs behind a backlog', () => {
  const BACKLOG = 3000;
  let running: string[];
  // A connection that read the demand many times while there were few jobs, as a worker does from its
  // start: a plan it kept from then must not read the backlog whole.
  let early: pg.PoolClient;

  beforeAll(async () => {
    await pool.query('DELETE FROM jobs');
    await pool.query('ANALYZE jobs');
    early = await pool.connect();
    for (let i = 0; i < 8; i++) await tenantDemand(early, 8);
    await pool.query(
      `INSERT INTO jobs (id, tenant_id, type, input, max_attempts, created_at)
       SELECT gen_random_uuid(), $1, 'synthetic', '{}', 3, now() - make_interval(secs => g) FROM generate_series(1, $2) g`,
      [tenantId, BACKLOG],
    );
    await pool.query(
      `INSERT INTO jobs (id, tenant_id, type, input, max_attempts, status, started_at, finished_at, created_at)
       SELECT gen_random_uuid(), $1, 'synthetic', '{}', 3, 'COMPLETED', now(), now(), now() - make_interval(secs => g)
         FROM generate_series(1, $2) g`,
      [tenantId, BACKLOG],
    );
    // The oldest jobs run, one with its lease run out.
    running = [
      await insertJob(pool, tenantId, { ...leasedTo(randomUUID()), created_at: secondsFromNow(-86_400) }),
      await insertJob(pool, tenantId, { ...leasedTo(randomUUID()), created_at: secondsFromNow(-86_401) }),
      await insertJob(pool, tenantId, {
        ...leasedTo(randomUUID()),
        lease_expires_at: secondsFromNow(-1),
        created_at: secondsFromNow(-86_402),
      }),
    ];
    // No ANALYZE: it would make the early connection plan again (a backlog comes faster than autovacuum's).
  });

  /** Runs `read` and answers it with the rows of jobs it read: entries of its indexes, and rows of whole-table scans. */
  async function entriesRead<T>(
    read: (c: pg.PoolClient) => Promise<T>,
    on?: pg.PoolClient,
  ): Promise<{ result: T; entries: number }> {
    const c = on ?? (await pool.connect());
    try {
      const entries = async () =>
        (
          await c.query<{ n: number }>(
            `SELECT (coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)
                     + pg_stat_get_xact_tuples_returned('jobs'::regclass))::int AS n
               FROM pg_index WHERE indrelid = 'jobs'::regclass`,
          )
        ).rows[0]?.n ?? 0;
      await c.query('BEGIN');
      const before = await entries();
      const result = await read(c);
      const after = await entries();
      await c.query('ROLLBACK');
      return { result, entries: after - before };
    } finally {
      if (on === undefined) c.release();
    }
  }

  it('lists the RUNNING jobs from running_jobs, not by walking the waiting ones', async () => {
    const { result, entries } = await entriesRead((c) => listJobs(c, tenantId, { status: 'RUNNING', limit: 20 }));
    expect(result.rows.map((r) => r.id)).toEqual(running);
    expect(entries).toBeLessThanOrEqual(10);
  });

  it('reads a page of all the jobs from each phase in order, not all of them', async () => {
    const { result, entries } = await entriesRead((c) => listJobs(c, tenantId, { limit: 20 }));
    expect(result.rows).toHaveLength(20);
    const { rows } = await pool.query<{ id: string }>(
      'SELECT id FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 20',
      [tenantId],
    );
    expect(result.rows.map((r) => r.id)).toEqual(rows.map((r) => r.id));
    expect(entries).toBeLessThanOrEqual(4 * 21);
  });

  it('finds the lapsed leases and the tenants’ running jobs through running_jobs', async () => {
    const sweep = await entriesRead((c) => lockExpiredLeases(c, 10));
    expect(sweep.result.map((r) => r.id)).toEqual([running[2]]);
    expect(sweep.entries).toBeLessThanOrEqual(10);

    const demand = await entriesRead((c) => tenantDemand(c, 8), early);
    early.release();
    expect(demand.result.get(tenantId)).toEqual({ running: 3, waiting: 8 });
    // Each tenant's first active jobs up to the cap, and the running ones: a few dozen entries, not the backlog.
    expect(demand.entries).toBeLessThanOrEqual(30);
  });
});
