/**
 * The fetch of executions from pg-boss's job table, each fetch one statement that also claims the jobs
 * it can (lifecycle.ts claimFetchedSql) and settles the executions it took: an execution whose job it
 * claimed is consumed (deleted: from the claim on, the job's `jobs` row alone carries the attempt, its
 * lease and fence), any other is marked active, as pg-boss's fetch marks it, for the locked claim
 * (claimer.ts), which consumes it when it takes the lease. An execution costs pg-boss's row one
 * insert, a row lock and a delete, never an update that adds an entry to each of its indexes.
 *
 * The candidates are pg-boss's own plain fetch's, or those of the fetch under the tenants' fair shares.
 * The fair fetch:
 * pg-boss's group-limited fetch takes its LIMIT of candidates in queue order and only then trims each
 * group to its limit, so a tenant behind another's backlog is not among the candidates and the trimmed
 * slots stay empty. This statement applies each tenant's cap before the limit: for every tenant with
 * executions queued (a skip scan over the index of sql/076), its next ones by priority and age up to
 * its room (its cap less its jobs running: its leased RUNNING jobs and its executions marked active,
 * counted in the same statement); then the best of those up to the free slots, by priority, then the
 * fewest jobs the tenant would have running, then age. So the first fetch after a tenant's job is
 * written takes it at the next free slot, ahead of another tenant's older jobs of the same priority,
 * whatever the last reading of the demand.
 *
 * Both take executions exactly as pg-boss's fetch does (pg-boss 12 plans.js fetchNextJob, queue policy
 * standard or short): the same candidate conditions, the same columns set on those marked active, and
 * of the columns it returns those the worker reads (FETCHED_COLUMNS). test/pgboss-drift.test.ts
 * compares those pieces with the statement pg-boss builds, so an upgrade that changes them fails there.
 * Executions are grouped by tenant (the group's id and tier are both the tenant id).
 */
import type { PgBoss } from 'pg-boss';
import type { Queryable } from '../db/pool.ts';
import { fetchAndClaim, LEASED_BY_TENANT_SQL, type FetchedClaim } from '../jobs/lifecycle.ts';
import type { ExecutionData } from './executions.ts';

/** Which executions pg-boss may fetch now, for an execution `j` (pg-boss's own conditions). */
export const CANDIDATE_CONDITIONS = [
  `j.state < 'active'`,
  'NOT j.blocked',
  `j.start_after <= pgboss.job_now()`,
] as const;

/** The retry count a fetch gives an execution (pg-boss's: a retry counts when the execution had started before). */
const RETRY_COUNT_SQL = 'CASE WHEN started_on IS NOT NULL THEN retry_count + 1 ELSE retry_count END';

/** What pg-boss's fetch sets on an execution it takes, and ours on one it marks active. */
export const CLAIM_SET_SQL = `state = 'active',
  started_on = pgboss.job_now(),
  heartbeat_on = pgboss.job_now(),
  retry_count = ${RETRY_COUNT_SQL}`;

/**
 * What the fetch returns of each execution: the columns the worker reads, under the names pg-boss's
 * fetch gives them, the retry count as the fetch leaves it. pg-boss returns some thirty with
 * metadata, eight of them timestamps; parsing them for every execution was most of the worker's work
 * in reading the answer.
 */
export const FETCHED_COLUMNS = `id, data, ${RETRY_COUNT_SQL} as "retryCount", retry_limit as "retryLimit"`;

/** Queue policies whose fetch adds no conditions of its own (no singleton or key ordering). */
const PLAIN_POLICIES = new Set(['standard', 'short']);

/** The queue's job table (pg-boss keeps a queue in the shared table or a partition of its own). */
export async function queueTable(boss: PgBoss, queue: string): Promise<string> {
  const q = await boss.getQueue(queue);
  if (q === null) throw new Error(`queue ${queue} does not exist`);
  if (!PLAIN_POLICIES.has(q.policy ?? 'standard'))
    throw new Error(`queue ${queue} has policy ${q.policy}; the fair fetch handles standard and short queues`);
  if (q.table === undefined || !/^\w+$/.test(q.table)) throw new Error(`queue ${queue} has no job table`);
  return q.table;
}

/** The statement; $1 queue, $2 free slots, $3 every tenant's cap, $4 caps of their own (jsonb by tenant). */
export function fairFetchSql(table: string): string {
  const candidate = CANDIDATE_CONDITIONS.join(' AND ');
  return `WITH RECURSIVE
  groups AS (
    (SELECT j.group_id FROM pgboss.${table} j
      WHERE j.name = $1 AND j.state < 'active' AND NOT j.blocked AND j.group_id IS NOT NULL
      ORDER BY j.group_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.group_id FROM pgboss.${table} j
             WHERE j.name = $1 AND j.state < 'active' AND NOT j.blocked AND j.group_id > g.group_id
             ORDER BY j.group_id LIMIT 1)
      FROM groups g WHERE g.group_id IS NOT NULL
  ),
  active AS MATERIALIZED (
    SELECT group_id, sum(n)::int AS n FROM (
      SELECT group_id, count(*)::int AS n FROM pgboss.${table}
       WHERE name = $1 AND state = 'active' AND group_id IS NOT NULL GROUP BY group_id
      UNION ALL
      ${LEASED_BY_TENANT_SQL}
    ) a GROUP BY group_id
  ),
  room AS (
    SELECT g.group_id, coalesce(a.n, 0) AS active,
           least($2::int, coalesce(($4::jsonb ->> g.group_id)::int, $3::int) - coalesce(a.n, 0)) AS room
      FROM groups g LEFT JOIN active a USING (group_id)
     WHERE g.group_id IS NOT NULL
  ),
  candidates AS (
    SELECT c.id, c.priority, c.created_on,
           r.active + row_number() OVER (PARTITION BY r.group_id ORDER BY c.priority DESC, c.created_on) AS load
      FROM room r
     CROSS JOIN LATERAL (
       SELECT j.id, j.priority, j.created_on FROM pgboss.${table} j
        WHERE j.name = $1 AND j.group_id = r.group_id AND ${candidate}
        -- Negated, the priority orders as only the tenant index does (sql/076): sorted as the queue's own
        -- index is, the planner may walk that one through every other tenant's executions.
        ORDER BY -j.priority, j.created_on LIMIT greatest(r.room, 0)
        FOR UPDATE OF j SKIP LOCKED
     ) c
    UNION ALL
    SELECT u.id, u.priority, u.created_on, 0 FROM (
      SELECT j.id, j.priority, j.created_on FROM pgboss.${table} j
       WHERE j.name = $1 AND j.group_id IS NULL AND ${candidate}
       ORDER BY j.priority DESC, j.created_on LIMIT $2
       FOR UPDATE OF j SKIP LOCKED
    ) u
  ),
  next AS (SELECT id FROM candidates ORDER BY priority DESC, load, created_on LIMIT $2)
SELECT ${FETCHED_COLUMNS} FROM pgboss.${table} j
 WHERE j.name = $1 AND j.id = ANY (ARRAY(SELECT id FROM next))`;
}

/** pg-boss's fetch of a standard or short queue without group limits, locking its rows; $1 queue, $2 how many. */
export function plainFetchSql(table: string): string {
  return `SELECT ${FETCHED_COLUMNS} FROM pgboss.${table} j
 WHERE j.name = $1 AND ${CANDIDATE_CONDITIONS.join(' AND ')}
 ORDER BY j.priority desc, j.created_on LIMIT $2
 FOR UPDATE OF j SKIP LOCKED`;
}

/**
 * How a fetch settles the executions it took (claimFetchedSql's `after`): those whose jobs it claimed
 * are deleted, the others marked active. Each named by id (`= ANY`): with statistics read under a
 * backlog, a generic plan that joins them may walk the queue's index by name past every execution of
 * the drained backlog.
 */
export function settleFetchedSql(table: string): string {
  const claimed = 'ARRAY(SELECT execution_id FROM u)';
  return `consumed AS (
    DELETE FROM pgboss.${table} j WHERE j.name = $1 AND j.id = ANY (${claimed})),
  marked AS (
    UPDATE pgboss.${table} j SET ${CLAIM_SET_SQL}
     WHERE j.name = $1 AND j.id = ANY (ARRAY(SELECT f.id FROM fetched f WHERE f.id <> ALL (${claimed}))))`;
}

/** A fetched execution, with its job when the fetch claimed it (else the locked claim looks at it). */
export interface FetchedExecution {
  id: string;
  data: ExecutionData;
  retryCount: number;
  retryLimit: number;
  claim: FetchedClaim | null;
}

/**
 * Takes up to `free` executions of `queue` (in `table`), and claims their jobs where it can for
 * `lease.owner`, in types with room in `lease.rooms`. Under `share`, at most `cap` per tenant (a
 * tenant in `caps` at most its own), counting the jobs each has running; without, pg-boss's plain
 * fetch. Executions whose jobs it claims are consumed, the others marked active (settleFetchedSql).
 */
export async function fetchExecutions(
  db: Queryable,
  table: string,
  queue: string,
  free: number,
  share: { cap: number; caps: Record<string, number> } | undefined,
  lease: { owner: string; seconds: number; rooms: ReadonlyMap<string, number> },
): Promise<FetchedExecution[]> {
  const after = settleFetchedSql(table);
  const fetch =
    share === undefined
      ? { name: `longhaul_fetch_claim_${table}`, text: plainFetchSql(table), values: [queue, free], after }
      : {
          name: `longhaul_fair_fetch_claim_${table}`,
          text: fairFetchSql(table),
          values: [queue, free, share.cap, JSON.stringify(share.caps)],
          after,
        };
  return fetchAndClaim<FetchedExecution>(db, fetch, lease);
}
