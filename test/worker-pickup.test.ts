/**
 * A job's first execution reaches its first chunk through one statement and one commit: the fetch that
 * takes the execution from pg-boss's queue claims the job in the same statement (lease, RUNNING and its
 * event, which the row carries: sql/098) and consumes the execution, and start()'s checkpoint waits for
 * the first chunk's. The `pickup` fixture reads, in its chunk, whether its job's row carries its RUNNING
 * event (yes, and job_events holds none) and whether its execution is still in pg-boss's table (no).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES, waitFor } from './support/worker.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ roles: ['api', 'worker'], env: { LONGHAUL_JOB_TYPES: FIXTURE_TYPES } });
});
afterAll(async () => t.stop());

it('takes and consumes the execution, claims the job and writes its RUNNING event in one transaction before the first chunk', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await t.api('/v1/jobs', { method: 'POST', json: { type: 'pickup', input: {} } });
    expect(res.status).toBe(202);
    ids.push(((await res.json()) as { id: string }).id);
  }
  const rows = await waitFor('pickup jobs completed', async () => {
    const { rows } = await t.service.pool.query<{
      status: string;
      processed: number;
      total: number | null;
      result: { job?: string; running_in_row?: boolean; running_rows?: number; execution_left?: boolean };
    }>('SELECT status, processed, total, result FROM jobs WHERE id = ANY($1::uuid[])', [ids]);
    return rows.length === ids.length && rows.every((r) => r.status === 'COMPLETED') && rows;
  });
  for (const r of rows) {
    expect(r.result.job).toMatch(/^\d+$/);
    expect(r.result.running_in_row).toBe(true);
    expect(r.result.running_rows).toBe(0);
    expect(r.result.execution_left).toBe(false);
    // start()'s total, committed with the last (here the only) chunk.
    expect(r.total).toBe(1);
    expect(r.processed).toBe(1);
  }
});
