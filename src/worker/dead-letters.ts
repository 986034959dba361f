/**
 * Replays from the dead-letter queue (jobs that failed for good: attempts exhausted or a permanent
 * error; listed by src/jobs/repository.ts). A replay gives the job a fresh set of attempts and a new
 * execution, from its last checkpoint or from the start, in one transaction.
 */
import type { PgBoss } from 'pg-boss';
import { withTransaction, type Pool, type Queryable } from '../db/pool.ts';
import type { JobRow } from '../jobs/model.ts';
import { lockDeadLetters, lockJobOf } from '../jobs/repository.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import { replayIfFailed } from '../jobs/lifecycle.ts';
import { removeDeadLetters, sendExecution } from './executions.ts';
import { DEFAULT_BACKOFF } from '../../packages/sdk/src/index.ts';

export type ReplayFrom = 'checkpoint' | 'start';

export type ReplayOutcome =
  { kind: 'replayed'; job: JobRow } | { kind: 'not-found' } | { kind: 'not-failed'; job: JobRow };

/** Replays one FAILED job: fresh attempts and lease-loss budget, a new execution, PENDING; from its checkpoint or from scratch. */
export async function replayJob(
  db: Queryable,
  boss: PgBoss,
  registry: JobTypeRegistry,
  tenantId: string,
  jobId: string,
  from: ReplayFrom,
): Promise<ReplayOutcome> {
  const job = await lockJobOf(db, tenantId, jobId);
  if (job === undefined) return { kind: 'not-found' };
  if (job.status !== 'FAILED') return { kind: 'not-failed', job };
  const type = registry.get(job.type);
  const execution = await sendExecution(boss, db, {
    jobId,
    tenantId,
    retriesLeft: job.max_attempts - 1,
    attemptsUsed: 0,
    backoff: type?.backoff ?? DEFAULT_BACKOFF,
    continuation: false,
    priority: job.priority,
  });
  await removeDeadLetters(boss, db, jobId);
  const replayed = await replayIfFailed(db, jobId, { execution, from });
  if (replayed === undefined) throw new Error(`job ${jobId} could not move from FAILED to PENDING`);
  return { kind: 'replayed', job: replayed };
}

/** Replays every dead-lettered job of a tenant matching the filter (oldest first, at most `limit`). */
export async function replayMany(
  pool: Pool,
  boss: PgBoss,
  registry: JobTypeRegistry,
  tenantId: string,
  f: { type?: string | undefined; since?: Date | undefined; until?: Date | undefined; limit: number; from: ReplayFrom },
): Promise<string[]> {
  return withTransaction(pool, async (c) => {
    const rows = await lockDeadLetters(c, tenantId, f);
    const ids: string[] = [];
    for (const { id } of rows) {
      const out = await replayJob(c, boss, registry, tenantId, id, f.from);
      if (out.kind === 'replayed') ids.push(id);
    }
    return ids;
  });
}

/** Replays the chosen FAILED jobs of a tenant in one transaction; returns the ids replayed (others are skipped). */
export async function replaySelected(
  pool: Pool,
  boss: PgBoss,
  registry: JobTypeRegistry,
  tenantId: string,
  ids: readonly string[],
  from: ReplayFrom,
): Promise<string[]> {
  return withTransaction(pool, async (c) => {
    const replayed: string[] = [];
    for (const id of ids) {
      const out = await replayJob(c, boss, registry, tenantId, id, from);
      if (out.kind === 'replayed') replayed.push(id);
    }
    return replayed;
  });
}
