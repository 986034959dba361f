/**
 * Inserts a `jobs` row in any state for a test to start from, in place of hand-written INSERTs: the
 * defaults make a valid pending synthetic job, and `columns` (the table's own column names) set the rest.
 * jsonb columns take objects, arrays, or JSON text (`JSON.stringify('a')` for a JSON string); time
 * columns take a Date (`secondsFromNow`).
 */
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../../src/db/pool.ts';
import type { JobStatus } from '../../src/jobs/state.ts';

export interface JobColumns {
  id?: string;
  type?: string;
  status?: JobStatus;
  input?: unknown;
  max_attempts?: number;
  [column: string]: unknown;
}

/** Inserts the job and returns its id. */
export async function insertJob(db: Queryable, tenantId: string, columns: JobColumns = {}): Promise<string> {
  const row: Record<string, unknown> = {
    id: randomUUID(),
    type: 'synthetic',
    input: {},
    max_attempts: 3,
    ...columns,
    tenant_id: tenantId,
  };
  const names = Object.keys(row);
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO jobs (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING id`,
    // pg sends an array as a Postgres array literal; `jobs` has no array column, only jsonb ones.
    names.map((n) => (Array.isArray(row[n]) ? JSON.stringify(row[n]) : row[n])),
  );
  return (rows[0] as { id: string }).id;
}

/** A time `seconds` from now (negative: in the past), for lease and schedule columns. */
export const secondsFromNow = (seconds: number): Date => new Date(Date.now() + seconds * 1000);

/** The columns of a job that a worker runs now under lease `token`, as a claim leaves it. */
export const leasedTo = (token: string): JobColumns => ({
  status: 'RUNNING',
  lease_token: token,
  lease_expires_at: secondsFromNow(60),
});

/** Columns `columns` (SQL, comma-separated) of job `id`'s row; throws when there is no such job. */
export async function jobRow<R>(db: Queryable, id: string, columns: string): Promise<R> {
  const { rows } = await db.query(`SELECT ${columns} FROM jobs WHERE id = $1`, [id]);
  const r = rows[0] as R | undefined;
  if (r === undefined) throw new Error(`no job ${id}`);
  return r;
}
