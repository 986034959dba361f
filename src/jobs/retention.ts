/**
 * Retention of finished jobs: a COMPLETED, FAILED or CANCELLED job is deleted (with its events,
 * deliveries and attempts, by cascade) once it has been finished for LONGHAUL_JOB_RETENTION_SECONDS.
 * A job that still has artifacts is kept until the artifact sweep has removed them and their files.
 */
import type { Pool } from '../db/pool.ts';
import { TERMINAL_STATUSES } from './state.ts';

/** Jobs deleted per statement, so one sweep never holds many row locks or a long transaction. */
const SWEEP_BATCH = 500;

/** One pass: deletes expired finished jobs in batches; returns how many. */
export async function sweepFinishedJobs(pool: Pool, retentionSeconds: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM jobs WHERE id IN (
         SELECT j.id FROM jobs j
          WHERE j.finished_at IS NOT NULL AND j.finished_at < now() - make_interval(secs => $1)
            AND j.status = ANY($2::text[])
            AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id)
          LIMIT $3
          FOR UPDATE SKIP LOCKED)`,
      [retentionSeconds, [...TERMINAL_STATUSES], SWEEP_BATCH],
    );
    deleted += rowCount ?? 0;
    if ((rowCount ?? 0) < SWEEP_BATCH) return deleted;
  }
}
