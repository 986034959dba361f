/**
 * The step transaction (`ctx.db`) of a chunk that runs while the previous chunk's checkpoint commits:
 * it begins only once that checkpoint has committed, and if the checkpoint failed, the chunk's queries
 * fail with the checkpoint's error without taking a connection.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LazyTransaction } from '../src/worker/lazy-transaction.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

describe('step transaction after a checkpoint', () => {
  it('fails its queries with the previous checkpoint’s error, taking no connection', async () => {
    const failed = Promise.reject(new Error('checkpoint refused'));
    failed.catch(() => undefined);
    const tx = new LazyTransaction(pool, failed);
    await expect(tx.db.query('SELECT 1')).rejects.toThrow('checkpoint refused');
    expect(pool.totalCount).toBe(0);
    await tx.rollback();
  });

  it('begins once the previous checkpoint has committed, and commits its writes with its own checkpoint', async () => {
    await pool.query('CREATE TABLE steps (n int)');
    let commit: () => void = () => undefined;
    const previous = new Promise<void>((resolve) => (commit = resolve))
      .then(() => pool.query('INSERT INTO steps VALUES (1)'))
      .then(() => undefined);
    const tx = new LazyTransaction(pool, previous);
    const seen = tx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM steps');
    commit();
    expect((await seen).rows[0]?.n).toBe(1);
    await tx.finish(async (c) => ({ value: await c.query('INSERT INTO steps VALUES (2)') }));
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM steps');
    expect(rows[0]?.n).toBe(2);
  });
});
