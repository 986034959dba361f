/**
 * A checkpoint and a lease renewal set no indexed column of `jobs`, so Postgres writes each as a HOT
 * update: no index entry, about half the WAL of a checkpoint that touches every index (sql/040). An
 * index added on a column a checkpoint sets (updated_at, lease_expires_at, processed, …) turns them
 * back into non-HOT updates, and this test red.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/repository.ts';
import { renewLease, writeCheckpoint } from '../src/jobs/lifecycle.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob, leasedTo } from './support/jobs.ts';

let db: TestDatabase;
let pool: pg.Pool;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  tenantId = (await createTenant(pool, 'hot')).id;
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

/** Rows of `jobs` updated, and of those HOT-updated, by `write` in a transaction rolled back afterwards. */
async function updatesBy(write: (c: pg.PoolClient) => Promise<void>): Promise<{ updated: number; hot: number }> {
  const c = await pool.connect();
  try {
    // The counters are this backend's not yet reported ones, which may include earlier transactions: a difference.
    const counts = async () =>
      (
        await c.query<{ updated: number; hot: number }>(
          `SELECT pg_stat_get_xact_tuples_updated('jobs'::regclass)::int AS updated,
                  pg_stat_get_xact_tuples_hot_updated('jobs'::regclass)::int AS hot`,
        )
      ).rows[0] ?? { updated: 0, hot: 0 };
    await c.query('BEGIN');
    const before = await counts();
    await write(c);
    const after = await counts();
    return { updated: after.updated - before.updated, hot: after.hot - before.hot };
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
}

describe('checkpoint writes', () => {
  it('a checkpoint and a lease renewal are HOT updates of the jobs row', async () => {
    const id = randomUUID();
    const token = randomUUID();
    const now = new Date();
    await insertJob(pool, tenantId, { id, ...leasedTo(token), event_seq: 2, checkpoint_at: now, started_at: now });
    const checkpoint = await updatesBy(async (c) => {
      const seq = await writeCheckpoint(c, {
        jobId: id,
        token,
        cursor: 1,
        state: { done: 1 },
        processed: 1,
        leaseSeconds: 30,
      });
      expect(seq).toBe(3);
    });
    expect(checkpoint).toEqual({ updated: 1, hot: 1 });
    const renewal = await updatesBy(async (c) => {
      expect(await renewLease(c, id, token, 30)).toEqual({ cancelRequested: false });
    });
    expect(renewal).toEqual({ updated: 1, hot: 1 });
  });
});
