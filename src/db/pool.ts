/** The pg connection pool and the one transaction helper every module uses. */
import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs a parameterised query: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

// bigint (int8) columns hold counters that stay far below 2^53; read them as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export function createPool(connectionString: string, max: number, applicationName = 'longhaul'): Pool {
  const pool = new pg.Pool({ connectionString, max, application_name: applicationName });
  // An idle client that loses its connection emits here; the pool replaces it on next use.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs `fn` inside BEGIN/COMMIT on one client, rolling back if it throws. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Adapts a pg client to pg-boss's `db` option, so pg-boss writes join the caller's transaction. */
export function bossDb(client: Queryable): { executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> } {
  return { executeSql: (text, values) => client.query(text, values) };
}
