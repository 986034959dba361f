/**
 * Two status events are the jobs row's: a claim's RUNNING (sql/098: a claim of a row without an error
 * appends no job_events row but sets `running_seq` and `running_at`) and a terminal status's (sql/099,
 * `finished_seq`). Every read of events (src/realtime/events.ts) finds them there, in order, with the
 * data their stored rows would have held. The job's next move to PENDING (a retry, a hand-over, an
 * operator's replay) stores them as rows before `attempts` can change, and a claim of a row that carries
 * an error (whose event carries it) stores its event as before.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { failIfActive, replayIfFailed, returnToPendingIfRunning, startIfPending } from '../src/jobs/lifecycle.ts';
import { readCoalesced, readEvents, recentEvents, type JobEvent } from '../src/realtime/events.ts';
import type { AttemptError } from '../src/jobs/model.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { insertJob } from './support/jobs.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;
let tenantId: string;

const failure = (message: string, attempt: number): AttemptError => ({
  kind: 'failure',
  message,
  attempt,
  at: new Date(0).toISOString(),
});

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  tenantId = (await createTenant(pool, 'running-event')).id;
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

/** The job's stored status rows: [seq, status, attempts, error]. */
async function storedRows(id: string): Promise<Array<[number, string, number, unknown]>> {
  const { rows } = await pool.query<{ seq: number; data: { status: string; attempts: number; error: unknown } }>(
    `SELECT seq, data FROM job_events WHERE job_id = $1 AND kind = 'status' ORDER BY seq`,
    [id],
  );
  return rows.map((r) => [r.seq, r.data.status, r.data.attempts, r.data.error]);
}

const statusOf = (e: JobEvent) => [
  e.seq,
  (e.data as { status: string }).status,
  (e.data as { attempts: number }).attempts,
];

/** Claims the PENDING job `id` as the locked claim does: attempts first, then PENDING → RUNNING. */
async function claim(id: string): Promise<number | undefined> {
  await pool.query('UPDATE jobs SET attempts = attempts + 1 WHERE id = $1', [id]);
  return startIfPending(pool, id);
}

it('leaves a first claim’s RUNNING event in the row, read by every reader as its row would read', async () => {
  const id = await insertJob(pool, tenantId, {});
  expect(await claim(id)).toBe(1);
  expect(await storedRows(id)).toEqual([]);
  const { rows } = await pool.query<{ running_seq: number; running_at: Date; started: boolean }>(
    'SELECT running_seq, running_at, running_at = updated_at AS started FROM jobs WHERE id = $1',
    [id],
  );
  expect(rows[0]).toMatchObject({ running_seq: 1, started: true });

  const [running] = await readEvents(pool, id, 0, 10);
  expect(running).toEqual({
    jobId: id,
    seq: 1,
    kind: 'status',
    data: { status: 'RUNNING', attempts: 1, error: null, result: null },
    createdAt: rows[0]?.running_at,
  });
  expect(await readEvents(pool, id, 1, 10)).toEqual([]);
  expect((await readCoalesced(pool, id, 0, 10)).map(statusOf)).toEqual([[1, 'RUNNING', 1]]);
  expect((await recentEvents(pool, id, 10)).map(statusOf)).toEqual([[1, 'RUNNING', 1]]);

  // A terminal status leaves it there and is the row's too: the job stores no status row at all.
  const error = failure('gave up', 1);
  await failIfActive(pool, id, { error, announce: false });
  const events = await readEvents(pool, id, 0, 10);
  const { rows: finished } = await pool.query<{ finished_seq: number; finished_at: Date }>(
    'SELECT finished_seq, finished_at FROM jobs WHERE id = $1',
    [id],
  );
  expect(finished[0]?.finished_seq).toBe(2);
  expect(events.at(-1)).toEqual({
    jobId: id,
    seq: 2,
    kind: 'status',
    data: { status: 'FAILED', attempts: 1, error, result: null },
    createdAt: finished[0]?.finished_at,
  });
  expect(events.map(statusOf)).toEqual([
    [1, 'RUNNING', 1],
    [2, 'FAILED', 1],
  ]);
  expect((await readCoalesced(pool, id, 1, 10)).map(statusOf)).toEqual([[2, 'FAILED', 1]]);
  expect(await storedRows(id)).toEqual([]);
});

it('stores the row’s RUNNING event when the job moves to PENDING, and a retry’s claim stores its own', async () => {
  const id = await insertJob(pool, tenantId, {});
  await claim(id);
  const error = failure('chunk failed', 1);
  await returnToPendingIfRunning(pool, id, { error, announce: false });
  expect(await storedRows(id)).toEqual([
    [1, 'RUNNING', 1, null],
    [2, 'PENDING', 1, error],
  ]);
  const { rows } = await pool.query('SELECT running_seq, running_at FROM jobs WHERE id = $1', [id]);
  expect(rows[0]).toEqual({ running_seq: null, running_at: null });

  // The retry's RUNNING event carries the last attempt's error, so it is a row.
  expect(await claim(id)).toBe(3);
  expect((await storedRows(id)).at(-1)).toEqual([3, 'RUNNING', 2, error]);
  expect((await readEvents(pool, id, 0, 10)).map(statusOf)).toEqual([
    [1, 'RUNNING', 1],
    [2, 'PENDING', 1],
    [3, 'RUNNING', 2],
  ]);
});

it('stores both before an operator’s replay starts the attempts afresh', async () => {
  const id = await insertJob(pool, tenantId, {});
  await claim(id);
  const error = failure('gave up', 1);
  await failIfActive(pool, id, { error, announce: false });
  const { rows: before } = await pool.query<{ running_at: Date; finished_at: Date }>(
    'SELECT running_at, finished_at FROM jobs WHERE id = $1',
    [id],
  );
  await replayIfFailed(pool, id, { execution: randomUUID(), from: 'checkpoint' });
  const events = await readEvents(pool, id, 0, 10);
  expect(events.map(statusOf)).toEqual([
    [1, 'RUNNING', 1],
    [2, 'FAILED', 1],
    [3, 'PENDING', 0],
  ]);
  expect(events.map((e) => e.createdAt).slice(0, 2)).toEqual([before[0]?.running_at, before[0]?.finished_at]);
  expect(await storedRows(id)).toEqual([
    [1, 'RUNNING', 1, null],
    [2, 'FAILED', 1, error],
    [3, 'PENDING', 0, error],
  ]);
  const { rows } = await pool.query('SELECT running_seq, finished_seq FROM jobs WHERE id = $1', [id]);
  expect(rows[0]).toEqual({ running_seq: null, finished_seq: null });
});
