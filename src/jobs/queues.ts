/** The pg-boss queues and their options: one table, so every process creates them the same way. */
import type { PgBoss } from 'pg-boss';

export const QUEUES = {
  /** One pg-boss job per execution of a longhaul job (a job of many hours is a chain of them). */
  jobs: 'longhaul-jobs',
  /** Executions that exhausted their retries; mirrored by FAILED jobs with their error history. */
  jobsDead: 'longhaul-jobs-dead',
} as const;

/** pg-boss refuses a heartbeat shorter than this. */
const MIN_HEARTBEAT_SECONDS = 10;

export interface QueueSettings {
  leaseSeconds: number;
  executionBudgetSeconds: number;
}

/** Options of each queue, derived from the worker settings. */
export function queueOptions(s: QueueSettings) {
  return {
    [QUEUES.jobsDead]: {
      // Dead executions are kept for the operator for 30 days.
      deleteAfterSeconds: 30 * 24 * 3600,
      retentionSeconds: 30 * 24 * 3600,
    },
    [QUEUES.jobs]: {
      deadLetter: QUEUES.jobsDead,
      // Our own lease (jobs.lease_token, swept by the worker monitor) detects a dead worker and fences
      // its late writes; pg-boss's heartbeat (at least 10 s) is the backstop should no monitor run.
      heartbeatSeconds: Math.max(MIN_HEARTBEAT_SECONDS, Math.ceil(s.leaseSeconds)),
      // One execution is bounded by the budget (it then continues in a follow-up execution); expiry is
      // the budget plus a margin for the last chunk.
      expireInSeconds: s.executionBudgetSeconds + Math.max(60, Math.ceil(s.leaseSeconds * 2)),
      retryBackoff: true,
      notify: true,
      deleteAfterSeconds: 24 * 3600,
    },
  } as const;
}

export async function ensureQueues(boss: PgBoss, s: QueueSettings): Promise<void> {
  const opts = queueOptions(s);
  // The dead-letter queue must exist before a queue that names it.
  for (const name of [QUEUES.jobsDead, QUEUES.jobs] as const) {
    const existing = await boss.getQueue(name);
    if (existing === null) {
      await boss.createQueue(name, opts[name]).catch(async (err: unknown) => {
        // Another process created it at the same moment.
        if ((await boss.getQueue(name)) === null) throw err;
      });
    }
  }
}
