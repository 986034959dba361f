/**
 * Moves a job to any status the state machine allows from its current one, as the service's own
 * actions do it (src/jobs/lifecycle.ts statusChangeSql: the row, its `status` event and, for a
 * terminal status, its webhook delivery), for a test to drive a job where no worker runs it.
 */
import type { Json } from '../../packages/sdk/src/index.ts';
import type { Queryable } from '../../src/db/pool.ts';
import { ANNOUNCE_SQL, statusChangeSql, type MovedJob } from '../../src/jobs/lifecycle.ts';
import { JOB_COLUMNS } from '../../src/jobs/model.ts';
import type { JobStatus } from '../../src/jobs/state.ts';

/**
 * The job moved, with its event's seq, or undefined if the move was not legal. `extraSql`: further
 * assignments, each led by a comma; `announce: false` does not notify the event. (Default: announced)
 */
export async function transition(
  db: Queryable,
  jobId: string,
  to: JobStatus,
  set: { result?: Json; error?: Json; extraSql?: string; announce?: boolean } = {},
): Promise<MovedJob | undefined> {
  const { rows } = await db.query<MovedJob>(
    statusChangeSql({
      to,
      set: `, result = COALESCE($2::jsonb, j.result), error = COALESCE($3::jsonb, j.error) ${set.extraSql ?? ''}`,
      where: 'j.id = $1',
      select: `SELECT ${JOB_COLUMNS}, event_seq${set.announce === false ? '' : `, ${ANNOUNCE_SQL}`} FROM u`,
    }),
    [
      jobId,
      set.result === undefined ? null : JSON.stringify(set.result),
      set.error === undefined ? null : JSON.stringify(set.error),
    ],
  );
  return rows[0];
}
