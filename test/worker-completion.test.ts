/**
 * The worker's completion of a group of jobs, one statement: it completes every job of a batch, or,
 * when any job of the batch is refused by its fence, changes nothing at all (the runtime then settles
 * the batch job by job). And the locked claim's consumption of an execution, fenced as pg-boss's own
 * complete is.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUES } from '../src/jobs/queues.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { deleteExecutions, type ExecutionData } from '../src/worker/executions.ts';
import { queueTable } from '../src/worker/fair-fetch.ts';
import {
  COMPLETE_REFUSED,
  completeAllQuery,
  completedSeqs,
  writeKey,
  type CompleteWithCheckpoint,
} from '../src/jobs/lifecycle.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob, leasedTo } from './support/jobs.ts';
import { statusEvents } from './support/realtime.ts';

let db: TestDatabase;
let pool: pg.Pool;
let boss: PgBoss;
let tenantId: string;
let table: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
  boss = new PgBoss({ connectionString: db.url, supervise: false, schedule: false });
  await boss.start();
  tenantId = (await createTenant(pool, 'completion')).id;
  table = await queueTable(boss, QUEUES.jobs);
});
afterAll(async () => {
  await boss.stop({ graceful: false });
  await pool.end();
  await db.drop();
});

/** `n` RUNNING jobs, each leased and with its execution fetched from pg-boss (active). */
async function runningJobs(
  n: number,
): Promise<Array<CompleteWithCheckpoint & { attempt: { id: string; retryCount: number } }>> {
  const jobs = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    const token = randomUUID();
    await insertJob(pool, tenantId, { id, ...leasedTo(token), event_seq: 2 });
    await boss.send(QUEUES.jobs, { jobId: id } satisfies ExecutionData, { id });
    jobs.push({
      jobId: id,
      token,
      cursor: 1,
      state: { done: 1 },
      processed: 1,
      result: { chunks: 1 },
      attempt: { id, retryCount: 0 },
    });
  }
  const fetched = await boss.fetch<ExecutionData>(QUEUES.jobs, { batchSize: n });
  expect(fetched.map((f) => f.id).sort()).toEqual(jobs.map((j) => j.jobId).sort());
  return jobs;
}

/** Each job's status, its execution's state (null: deleted) and its status events (as streams read them). */
async function states(ids: string[]): Promise<Array<{ status: string; execution: string | null; events: number }>> {
  const { rows } = await pool.query<{ id: string; status: string; execution: string | null }>(
    `SELECT j.id, j.status, b.state AS execution
       FROM jobs j LEFT JOIN pgboss.job b ON b.id = j.id AND b.name = $2 WHERE j.id = ANY($1::uuid[]) ORDER BY j.id`,
    [ids, QUEUES.jobs],
  );
  return Promise.all(rows.map(async ({ id, ...r }) => ({ ...r, events: (await statusEvents(pool, id)).length })));
}

describe('completion of a group of jobs in one statement', () => {
  it('completes every job and its events, and leaves pg-boss’s rows alone', async () => {
    const jobs = await runningJobs(3);
    const { rows } = await pool.query(completeAllQuery(jobs));
    const seqs = completedSeqs(rows);
    expect([...seqs.keys()].sort()).toEqual(jobs.map((j) => writeKey(j.jobId, j.token)).sort());
    for (const s of seqs.values()) expect(s).toEqual([3, 4]);
    expect(await states(jobs.map((j) => j.jobId))).toEqual(
      jobs.map(() => ({ status: 'COMPLETED', execution: 'active', events: 1 })),
    );
  });

  it('a claim consumes an execution only as pg-boss’s complete would complete it: the attempt fetched, still active', async () => {
    const [current, stale, expired] = await runningJobs(3);
    if (current === undefined || stale === undefined || expired === undefined) throw new Error('no job');
    // Another attempt fetched it since (a retry counts), or pg-boss failed it (its expiry or heartbeat check).
    await pool.query('UPDATE pgboss.job SET retry_count = retry_count + 1 WHERE id = $1', [stale.attempt.id]);
    await pool.query(`UPDATE pgboss.job SET state = 'failed' WHERE id = $1`, [expired.attempt.id]);
    await deleteExecutions(pool, table, [current.attempt, stale.attempt, expired.attempt]);
    const { rows } = await pool.query<{ id: string; state: string }>(
      'SELECT id, state FROM pgboss.job WHERE id = ANY($1::uuid[])',
      [[current.attempt.id, stale.attempt.id, expired.attempt.id]],
    );
    expect(new Map(rows.map((r) => [r.id, r.state]))).toEqual(
      new Map([
        [stale.attempt.id, 'active'],
        [expired.attempt.id, 'failed'],
      ]),
    );
  });

  it('changes nothing when one job of the batch is refused by its fence', async () => {
    const jobs = await runningJobs(3);
    const refused = jobs[1];
    if (refused === undefined) throw new Error('no job');
    await pool.query('UPDATE jobs SET cancel_requested_at = now() WHERE id = $1', [refused.jobId]);
    const err = await pool.query(completeAllQuery(jobs)).catch((e: unknown) => e);
    expect((err as { code?: unknown }).code).toBe(COMPLETE_REFUSED);
    expect(await states(jobs.map((j) => j.jobId))).toEqual(
      jobs.map(() => ({ status: 'RUNNING', execution: 'active', events: 0 })),
    );
    // The others complete alone.
    const again = jobs.filter((j) => j !== refused);
    const { rows } = await pool.query(completeAllQuery(again));
    expect(completedSeqs(rows).size).toBe(2);
    expect(await states(again.map((j) => j.jobId))).toEqual(
      again.map(() => ({ status: 'COMPLETED', execution: 'active', events: 1 })),
    );
  });
});
