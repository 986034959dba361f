/**
 * A job whose type no worker that ran it knows (a continuation or retry reaching workers without the
 * type's module) does not stay PENDING, or RUNNING with no lease, once its last execution is spent: it
 * fails for good with the reason in its error history, and is listed as a dead letter for replay.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { withTransaction } from '../src/db/pool.ts';
import { DEFAULT_BACKOFF } from '../packages/sdk/src/index.ts';
import { sendExecution } from '../src/worker/executions.ts';
import { insertJob } from './support/jobs.ts';
import { startTestService, type TestService } from './support/service.ts';
import { waitFor } from './support/worker.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ roles: ['api', 'worker'], env: { LONGHAUL_MONITOR_INTERVAL_SECONDS: '1' } });
});
afterAll(async () => t.stop());

it('fails and dead-letters a RUNNING job with no lease whose last execution meets no worker that knows its type', async () => {
  // As a job is after handing over at the end of an execution budget: RUNNING, checkpointed, no lease.
  const now = new Date();
  const id = await insertJob(t.service.pool, t.tenant.id, {
    type: 'not-deployed-here',
    status: 'RUNNING',
    max_attempts: 1,
    attempts: 1,
    checkpoint_cursor: 3,
    checkpoint_state: {},
    checkpoint_at: now,
    started_at: now,
  });
  await withTransaction(t.service.pool, async (c) => {
    const next = await sendExecution(t.service.boss, c, {
      jobId: id,
      tenantId: t.tenant.id,
      retriesLeft: 0,
      attemptsUsed: 1,
      backoff: DEFAULT_BACKOFF,
      continuation: true,
    });
    await c.query('UPDATE jobs SET execution_id = $2 WHERE id = $1', [id, next]);
  });
  const job = await waitFor('the job failed', async () => {
    const res = await t.api(`/v1/jobs/${id}`);
    const body = (await res.json()) as { status: string; error: { message: string } | null; error_history: unknown[] };
    return body.status === 'FAILED' ? body : undefined;
  });
  expect(job.error?.message).toMatch(/unknown job type "not-deployed-here"/);
  expect(job.error_history).toHaveLength(1);
  const list = (await (await t.api('/v1/dead-letters?kind=job')).json()) as { data: Array<{ job: { id: string } }> };
  expect(list.data.map((d) => d.job.id)).toContain(id);
});
