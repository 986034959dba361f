/** Retention of finished jobs: deleted with their events after the retention, no event left behind, nothing else touched. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepFinishedJobs } from '../src/jobs/retention.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

const DAY = 24 * 3600;

async function jobIn(status: string, finishedDaysAgo: number | null): Promise<string> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } },
  });
  const { id } = (await res.json()) as { id: string };
  await t.service.pool.query(
    `UPDATE jobs SET status = $2, finished_at = CASE WHEN $3::float8 IS NULL THEN NULL ELSE now() - make_interval(days => $3::int) END, event_seq = 1 WHERE id = $1`,
    [id, status, finishedDaysAgo],
  );
  await t.service.pool.query(`INSERT INTO job_events (job_id, seq, kind, data) VALUES ($1, 1, 'status', '{}')`, [id]);
  return id;
}

async function exists(id: string): Promise<{ job: boolean; events: number }> {
  const { rows } = await t.service.pool.query<{ job: boolean; events: number }>(
    'SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1) AS job, (SELECT count(*)::int FROM job_events WHERE job_id = $1) AS events',
    [id],
  );
  return rows[0] ?? { job: false, events: -1 };
}

describe('job retention', () => {
  it('deletes finished jobs past the retention with their events, and keeps the rest', async () => {
    const oldDone = await jobIn('COMPLETED', 40);
    const oldFailed = await jobIn('FAILED', 31);
    const oldCancelled = await jobIn('CANCELLED', 35);
    const recent = await jobIn('COMPLETED', 2);
    const pending = await jobIn('PENDING', null);
    const withArtifact = await jobIn('COMPLETED', 40);
    await t.service.pool.query(
      `INSERT INTO artifacts (job_id, tenant_id, name, content_type, size, storage_key, expires_at)
       SELECT id, tenant_id, 'report.csv', 'text/csv', 1, 'jobs/' || id || '/report.csv', now() + interval '1 day' FROM jobs WHERE id = $1`,
      [withArtifact],
    );

    const deleted = await sweepFinishedJobs(t.service.pool, 30 * DAY);

    expect(deleted).toBe(3);
    for (const id of [oldDone, oldFailed, oldCancelled]) expect(await exists(id)).toEqual({ job: false, events: 0 });
    for (const id of [recent, pending, withArtifact]) expect(await exists(id)).toEqual({ job: true, events: 1 });
    // No event is left without its job (job_events has no foreign key to cascade, sql/085).
    const { rows } = await t.service.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM job_events e WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)',
    );
    expect(rows[0]).toEqual({ n: 0 });
  });
});
