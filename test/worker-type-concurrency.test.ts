/**
 * A type's `concurrency` holds for executions that take the locked claim too: a bulk replay from the
 * checkpoint of two dead-lettered jobs of a concurrency-1 type sends both executions in one transaction,
 * the worker fetches them together, and the second waits for the first (the slot is reserved with no
 * await between its check and its taking).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, waitFor } from './support/worker.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({
    roles: ['api', 'worker'],
    env: {
      LONGHAUL_JOB_TYPES: FIXTURE_TYPES,
      LONGHAUL_LEASE_SECONDS: '5',
      LONGHAUL_MONITOR_INTERVAL_SECONDS: '1',
      LONGHAUL_WORKER_CONCURRENCY: '6',
      LONGHAUL_TENANT_CONCURRENCY: '4',
    },
  });
  process.env.DATABASE_URL = t.db.url;
});
afterAll(async () => t.stop());

describe('type concurrency with the locked claim', () => {
  it('runs at most one `single` job at once when two replayed executions are fetched together', async () => {
    await t.service.pool.query('CREATE TABLE IF NOT EXISTS chunk_runs (id bigserial PRIMARY KEY, job_id uuid, chunk int, pid int, started timestamptz, ended timestamptz)');
    const ids = [randomUUID(), randomUUID()];
    for (const id of ids) {
      // A job that failed for good after its first checkpoint (as the worker leaves one).
      await t.service.pool.query(
        `INSERT INTO jobs (id, tenant_id, type, status, input, max_attempts, attempts, total, checkpoint_cursor, checkpoint_state, checkpoint_at,
                           dead_lettered_at, finished_at, error, error_history, event_seq)
         VALUES ($1, $2, 'single', 'FAILED', '{"chunks": 3, "chunk_ms": 300}', 1, 1, 3, '0', '{"sum": 0}', now(),
                 now(), now(), '{"message": "x"}', '[{"message": "x"}]', 3)`,
        [id, t.tenant.id],
      );
    }
    const res = await t.api('/v1/dead-letters/replay', { method: 'POST', json: { type: 'single', from: 'checkpoint' } });
    expect(res.status).toBe(202);
    await waitFor('single jobs done', async () => {
      const { rows } = await t.service.pool.query<{ left: number }>(`SELECT count(*) FILTER (WHERE status <> 'COMPLETED')::int AS left FROM jobs WHERE id = ANY($1::uuid[])`, [ids]);
      return rows[0]?.left === 0;
    }, 30_000);
    const { rows } = await t.service.pool.query<{ overlaps: number; runs: number }>(
      `SELECT (SELECT count(*)::int FROM chunk_runs a JOIN chunk_runs b ON a.job_id <> b.job_id AND a.started < b.ended AND b.started < a.ended
                WHERE a.job_id = ANY($1::uuid[]) AND b.job_id = ANY($1::uuid[])) AS overlaps,
              (SELECT count(*)::int FROM chunk_runs WHERE job_id = ANY($1::uuid[]) AND ended IS NOT NULL) AS runs`,
      [ids],
    );
    expect(rows[0]).toEqual({ overlaps: 0, runs: 6 });
  });
});
