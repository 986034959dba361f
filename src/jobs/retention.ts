/**
 * Retention of finished jobs: a COMPLETED, FAILED or CANCELLED job is deleted (with its events,
 * deliveries and attempts, by cascade) once it has been finished for LONGHAUL_JOB_RETENTION_SECONDS.
 * A job that still has artifacts is kept until the artifact sweep has removed them and their files.
 */
import type { Pool } from '../db/pool.ts';
import { deleteFinishedJobs } from './lifecycle.ts';

/** Jobs deleted per statement, so one sweep never holds many row locks or a long transaction. */
const SWEEP_BATCH = 500;

/** One pass: deletes expired finished jobs in batches; returns how many. */
export async function sweepFinishedJobs(pool: Pool, retentionSeconds: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const n = await deleteFinishedJobs(pool, retentionSeconds, SWEEP_BATCH);
    deleted += n;
    if (n < SWEEP_BATCH) return deleted;
  }
}
