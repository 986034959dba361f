/**
 * A job's slot frees once its type's code has returned, while its completion commits: a worker of one
 * slot starts its next job beside the completion rather than after it. The test holds the completion
 * with a row lock on the job's row. Jobs settling count as free slots up to the process's slots.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeSlots } from '../src/worker/runtime.ts';
import type { CreatedTenant } from '../src/tenants/repository.ts';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, gateOpen, openGate, waitFor } from './support/worker.ts';

let t: TestService;
let tenant: CreatedTenant;
beforeAll(async () => {
  t = await startTestService({
    roles: ['api', 'worker'],
    env: { LONGHAUL_JOB_TYPES: FIXTURE_TYPES, LONGHAUL_WORKER_CONCURRENCY: '1' },
  });
  // The fixture opens its gates through its own pool, to the database in DATABASE_URL.
  process.env.DATABASE_URL = t.db.url;
  await t.service.pool.query('CREATE TABLE gates (job_id uuid, name text, PRIMARY KEY (job_id, name))');
  tenant = await t.newTenant();
});
afterAll(async () => t.stop());

const JOB = { type: 'settling', input: {} };

const opened = (jobId: string, name: string) => gateOpen(t.service.pool, jobId, name);
const open = (jobId: string, name: string) => openGate(t.service.pool, jobId, name);

async function status(jobId: string): Promise<string | undefined> {
  const { rows } = await t.service.pool.query<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [jobId]);
  return rows[0]?.status;
}

describe('a job settling', () => {
  it('frees its slot once its code returned: the next job starts while its completion waits', async () => {
    // Two jobs waiting at once: the worker, of one slot, starts one of them.
    const res = await t.api('/v1/jobs/batch', {
      method: 'POST',
      key: tenant.api_key,
      json: { jobs: [JOB, JOB] },
    });
    expect(res.status).toBe(202);
    const ids = ((await res.json()) as { data: Array<{ id: string }> }).data.map((j) => j.id);
    const first = await waitFor('a job started', async () => {
      for (const id of ids) if (await opened(id, 'started')) return id;
      return undefined;
    });
    const second = ids.find((id) => id !== first) ?? '';
    expect(await opened(second, 'started')).toBe(false);
    const locker = new pg.Client({ connectionString: t.db.url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE', [first]);
      await open(first, 'finish');
      await waitFor('the second job started in the one slot', () => opened(second, 'started'));
      // The first job's completion still waits for the lock: it is RUNNING, its slot given to the second.
      expect(await status(first)).toBe('RUNNING');
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    await open(second, 'finish');
    await waitFor(
      'both completed',
      async () => (await status(first)) === 'COMPLETED' && (await status(second)) === 'COMPLETED',
    );
  });

  it('counts jobs settling as free slots up to the process’s slots', () => {
    expect(freeSlots(8, 8, 0)).toBe(0);
    expect(freeSlots(8, 8, 3)).toBe(3);
    expect(freeSlots(8, 16, 8)).toBe(0);
    // Completions slow: a process holds at most twice its slots.
    expect(freeSlots(8, 12, 12)).toBe(4);
    expect(freeSlots(8, 16, 16)).toBe(0);
    expect(freeSlots(8, 3, 0)).toBe(5);
  });
});
