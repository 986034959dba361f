/**
 * A lagging subscriber's coalesced catch-up (src/realtime/events.ts readCoalesced) never skips a status
 * event: when the status events after its position are more than one read takes, the newest progress
 * event, which comes after the ones cut off, waits for the next read.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readCoalesced } from '../src/realtime/events.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;
let jobId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const tenant = await createTenant(pool, 'coalesced');
  jobId = randomUUID();
  await pool.query(
    `INSERT INTO jobs (id, tenant_id, type, status, input, max_attempts, event_seq) VALUES ($1, $2, 'synthetic', 'RUNNING', '{}', 9, 4)`,
    [jobId, tenant.id],
  );
  // status 1, status 2, status 3, progress 4
  await pool.query(
    `INSERT INTO job_events (job_id, seq, kind, data)
     SELECT $1, s, CASE WHEN s = 4 THEN 'progress' ELSE 'status' END,
            CASE WHEN s = 4 THEN '{"processed": 1, "total": 2, "percent": 50}'::jsonb ELSE '{"status": "RUNNING"}'::jsonb END
       FROM generate_series(1, 4) s`,
    [jobId],
  );
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

it('reads status events in order and the newest progress only once no status event before it is left', async () => {
  const first = await readCoalesced(pool, jobId, 0, 2);
  expect(first.map((e) => e.seq)).toEqual([1, 2]);
  const second = await readCoalesced(pool, jobId, 2, 2);
  expect(second.map((e) => e.seq)).toEqual([3, 4]);
  const all = await readCoalesced(pool, jobId, 0, 10);
  expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
});
