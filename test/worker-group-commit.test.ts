/**
 * A group-committed checkpoint batch answers each write by job and lease token. When the same job has
 * two writers in one batch (an execution whose lease was taken over, and the new owner, both in this
 * process), the stale write is refused by its fence and must be told so, not given the new owner's seq.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/repository.ts';
import type { CheckpointWrite } from '../src/jobs/lifecycle.ts';
import { checkpointGroup } from '../src/worker/checkpoint-group.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob, leasedTo } from './support/jobs.ts';

let db: TestDatabase;
let pool: pg.Pool;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
  tenantId = (await createTenant(pool, 'misattribution')).id;
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

describe('checkpoint group commit', () => {
  it('refuses a stale token’s checkpoint even when the new owner’s checkpoint of the same job shares its batch', async () => {
    const id = randomUUID();
    const stale = randomUUID();
    const current = randomUUID();
    await insertJob(pool, tenantId, { id, ...leasedTo(current), event_seq: 2, checkpoint_at: new Date() });
    const group = checkpointGroup(pool);
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
