/**
 * Pausing and resuming a schedule, shared by the API and the console: the row is locked, and resuming
 * owes the next occurrence after now (none of those that came while it was paused).
 */
import { withTransaction, type Pool } from '../db/pool.ts';
import { nextOccurrence } from './cron.ts';
import { lockSchedule, updateSchedule, type ScheduleRow } from './store.ts';

/** The schedule after the change (unchanged if it already was so); undefined when the tenant has no such schedule. */
export async function setSchedulePaused(
  pool: Pool,
  tenantId: string,
  id: string,
  paused: boolean,
): Promise<ScheduleRow | undefined> {
  return withTransaction(pool, async (client) => {
    const current = await lockSchedule(client, tenantId, id);
    if (current === undefined || (current.paused_at !== null) === paused) return current;
    return updateSchedule(
      client,
      id,
      current,
      paused ? new Date() : null,
      paused ? null : nextOccurrence(current.cron, current.timezone, id, new Date()),
    );
  });
}
