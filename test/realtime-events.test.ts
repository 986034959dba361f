/**
 * Reading job events (src/realtime/events.ts). A lagging subscriber's coalesced catch-up never skips a
 * status event: when the status events after its position are more than one read takes, the newest
 * progress event, which comes after the ones cut off, waits for the next read. A checkpoint's progress
 * is read from the jobs row (sql/041): every read after a position gets the status events and the
 * newest progress.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { transition } from './support/status.ts';
import {
  progressUpTo,
  readCoalesced,
  readEvents,
  readEventsOfJobs,
  recentEvents,
  type JobEvent,
} from '../src/realtime/events.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { writeCheckpoint } from '../src/jobs/lifecycle.ts';
import { insertJob, leasedTo } from './support/jobs.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;
let jobId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const tenant = await createTenant(pool, 'coalesced');
  jobId = await insertJob(pool, tenant.id, { status: 'RUNNING', max_attempts: 9, event_seq: 4 });
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

it('reads a checkpoint’s progress from the jobs row: every status after a position and the newest progress', async () => {
  const tenant = await createTenant(pool, 'progress-row');
  const token = randomUUID();
  const id = await insertJob(pool, tenant.id, { ...leasedTo(token), event_seq: 1, checkpoint_at: new Date() });
  await pool.query(
    `INSERT INTO job_events (job_id, seq, kind, data) VALUES ($1, 1, 'status', '{"status": "RUNNING"}')`,
    [id],
  );
  const checkpoint = (processed: number) =>
    writeCheckpoint(pool, { jobId: id, token, cursor: processed, state: {}, processed: 1, total: 4, leaseSeconds: 30 });
  expect([await checkpoint(1), await checkpoint(2), await checkpoint(3)]).toEqual([2, 3, 4]);
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM job_events WHERE job_id = $1', [id]);
  expect(rows[0]?.n).toBe(1);

  const progress = (e: JobEvent) => [
    e.seq,
    e.kind,
    e.kind === 'progress' ? e.data : (e.data as { status: string }).status,
  ];
  const newest = [4, 'progress', { processed: 3, total: 4, percent: 75 }];
  expect((await readEvents(pool, id, 0, 10)).map(progress)).toEqual([[1, 'status', 'RUNNING'], newest]);
  // A stream that saw seq 2 resumes with the newest progress; one that saw it all, with nothing.
  expect((await readEvents(pool, id, 2, 10)).map(progress)).toEqual([newest]);
  expect(await readEvents(pool, id, 4, 10)).toEqual([]);
  expect((await readEventsOfJobs(pool, [{ jobId: id, after: 1 }], 10)).map(progress)).toEqual([newest]);
  expect((await readCoalesced(pool, id, 0, 10)).map(progress)).toEqual([[1, 'status', 'RUNNING'], newest]);
  expect((await recentEvents(pool, id, 1)).map(progress)).toEqual([newest]);
  expect(await progressUpTo(pool, id, 4)).toEqual({ processed: 3, percent: 75 });
  expect(await progressUpTo(pool, id, 3)).toEqual({ processed: 0, percent: null });

  // A status change after the last checkpoint: both are read, in order, the progress at its own seq.
  const moved = await transition(pool, id, 'COMPLETED', { result: { ok: true }, announce: false });
  expect(moved?.event_seq).toBe(5);
  expect((await readEvents(pool, id, 3, 10)).map(progress)).toEqual([newest, [5, 'status', 'COMPLETED']]);
});
