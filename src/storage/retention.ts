/**
 * Retention: artifacts are deleted (row and file) once they expire, and the working files of jobs that
 * ended without completing (a report's CSV in progress) once the job has been over for as long.
 */
import type { Pool } from '../db/pool.ts';
import { takeExpiredArtifacts } from './artifacts.ts';
import type { Storage } from './storage.ts';

/** Expired artifacts removed per statement, so one sweep never holds many row locks. */
const SWEEP_BATCH = 500;
/** Job folders checked against the jobs table per query. */
const JOB_DIR_BATCH = 1000;

/** Folder of a job's files in the storage. */
export function jobFolder(jobId: string): string {
  return `jobs/${jobId}`;
}

/** One pass: returns how many artifacts and job folders were removed. */
export async function sweepArtifacts(
  pool: Pool,
  storage: Storage,
  retentionSeconds: number,
): Promise<{ artifacts: number; folders: number }> {
  let artifacts = 0;
  for (;;) {
    const expired = await takeExpiredArtifacts(pool, SWEEP_BATCH);
    for (const a of expired) await storage.delete(a.storage_key);
    artifacts += expired.length;
    if (expired.length < SWEEP_BATCH) break;
  }
  let folders = 0;
  const ids = (await storage.list('jobs')).filter((n) => /^[0-9a-f-]{36}$/.test(n));
  for (let i = 0; i < ids.length; i += JOB_DIR_BATCH) {
    const batch = ids.slice(i, i + JOB_DIR_BATCH);
    // A folder is kept while its job may still use it or its artifacts are live.
    const { rows } = await pool.query<{ id: string }>(
      `SELECT j.id::text AS id FROM jobs j
        WHERE j.id = ANY($1::uuid[])
          AND (j.status IN ('PENDING', 'RUNNING') OR j.finished_at IS NULL OR j.finished_at > now() - make_interval(secs => $2)
               OR EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id))`,
      [batch, retentionSeconds],
    );
    const keep = new Set(rows.map((r) => r.id));
    for (const id of batch) {
      if (keep.has(id)) continue;
      await storage.delete(jobFolder(id));
      folders++;
    }
  }
  return { artifacts, folders };
}
