/**
 * Checkpoint writes of a leased job. A checkpoint and a lease renewal set no indexed column of `jobs`, so
 * Postgres writes each as a HOT update: no index entry, about half the WAL of a checkpoint that touches
 * every index (sql/040); an index added on a column a checkpoint sets (updated_at, lease_expires_at,
 * processed, …) turns them back into non-HOT updates, and this test red. A group-committed checkpoint
 * batch answers each write by job and lease token: when the same job has two writers in one batch (an
 * execution whose lease was taken over, and the new owner, both in this process), the stale write is
 * refused by its fence and must be told so, not given the new owner's seq.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/repository.ts';
import { renewLease, writeCheckpoint, type CheckpointWrite } from '../src/jobs/lifecycle.ts';
import { checkpointGroup } from '../src/worker/checkpoint-group.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob, leasedTo } from './support/jobs.ts';

let db: TestDatabase;
let pool: pg.Pool;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
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

  it('refuses a stale token’s checkpoint even when the new owner’s checkpoint of the same job shares its batch', async () => {
    const id = randomUUID();
    const stale = randomUUID();
    const current = randomUUID();
    await insertJob(pool, tenantId, { id, ...leasedTo(current), event_seq: 2, checkpoint_at: new Date() });
    const group = checkpointGroup(() => pool);
    const w = (token: string, cursor: number): CheckpointWrite => ({
      jobId: id,
      token,
      cursor,
      state: {},
      processed: 1,
      leaseSeconds: 30,
    });
    // Two writes in one batch: the unnest statement, answered by job id.
    const [staleSeq, currentSeq] = await Promise.all([group.submit(w(stale, 7)), group.submit(w(current, 1))]);
    const { rows } = await pool.query<{ processed: number; cursor: unknown }>(
      'SELECT processed, checkpoint_cursor AS cursor FROM jobs WHERE id = $1',
      [id],
    );
    expect(rows[0]).toEqual({ processed: 1, cursor: 1 });
    expect(currentSeq).toBe(3);
    // The stale writer's checkpoint did not commit: it must be told so (undefined), not seq 3.
    expect(staleSeq).toBeUndefined();
  });
});
