/** Group commit of the checkpoints whose step wrote nothing through ctx.db (src/worker/group-commit.ts). */
import type { Queryable } from '../db/pool.ts';
import { GROUP_MAX, writeCheckpoint, writeCheckpoints, writeKey, type CheckpointWrite } from '../jobs/lifecycle.ts';
import { GroupCommit } from './group-commit.ts';

/**
 * Checkpoints of steps that wrote nothing through ctx.db, group-committed: those that arrive while a
 * statement is in flight share the next one (one commit for all). Answers each job's event seq. `db`
 * gives the connections of each statement: the worker's group-commit connections, whose settings keep
 * the statements' generic plans off whole-table reads (src/worker/settler.ts COMMIT_SESSION).
 */
export function checkpointGroup(db: () => Queryable): GroupCommit<CheckpointWrite, number | undefined> {
  return new GroupCommit(async (writes) => {
    // A checkpoint alone (one long job, as a report usually is) takes the one-row statement: the unnest
    // form is planned afresh each time for one row, and its JSON goes through array-literal quoting.
    if (writes.length === 1 && writes[0] !== undefined) return [await writeCheckpoint(db(), writes[0])];
    const seqs = await writeCheckpoints(db(), writes);
    return writes.map((w) => seqs.get(writeKey(w.jobId, w.token)));
  }, GROUP_MAX);
}
