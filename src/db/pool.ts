/** The pg connection pool and the one transaction helper every module uses. */
import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs a parameterised query: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

// bigint (int8) columns hold counters that stay far below 2^53; read them as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/**
 * Whether a database error is about a value Postgres refuses (SQLSTATE class 22, data exception: U+0000
 * in text, a number out of range…), not about the database, the connection or the statement.
 */
export function isDataException(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('22');
}

/**
 * Longest wait for a connection (a new one, or a free one of a busy pool): while the database cannot be
 * reached a request fails within this, instead of waiting for as long as the server takes to refuse.
 */
const CONNECT_TIMEOUT_MS = 3_000;

/** Error codes of a database that cannot be reached, or that ended the connection (not of a statement). */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']);
/** SQLSTATEs of a server shutting down, starting up, or refusing connections: 57P01–57P03, 53300, and class 08. */
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '53300']);
/**
 * What node-postgres says when a connection broke or could not be had in time, and what Postgres says
 * when the database does not take connections (ALLOW_CONNECTIONS false, a SQLSTATE shared with other causes).
 */
const CONNECTION_MESSAGES =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed)|is not currently accepting connections$/;

/**
 * Whether an error means the database went away or cannot be reached (refused, reset, shut down,
 * starting up, a broken or timed-out connection), rather than a statement failing. Follows `cause`
 * and AggregateError's errors (a refused connection to every address of a host).
 */
export function isConnectionError(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 4) return false;
  const { code, message, cause, errors } = err as {
    code?: unknown;
    message?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof code === 'string' && (CONNECTION_CODES.has(code) || UNAVAILABLE_STATES.has(code) || /^08...$/.test(code)))
    return true;
  if (typeof message === 'string' && CONNECTION_MESSAGES.test(message)) return true;
  if (Array.isArray(errors) && errors.some((e) => isConnectionError(e, depth + 1))) return true;
  return isConnectionError(cause, depth + 1);
}

/**
 * Errors of a pool's connections go to the callers whose queries they fail, and a broken connection
 * is discarded when released. The pool and each connection also emit them as 'error' events (an idle
 * one on the pool, one checked out on itself), which would end the process if nobody listened.
 */
export function absorbConnectionErrors(pool: pg.Pool): void {
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
}

/** A pool of `max` connections; `settings`: server settings of its sessions (sent at connect, `-c name=value`). */
export function createPool(
  connectionString: string,
  max: number,
  applicationName = 'longhaul',
  settings: Readonly<Record<string, string>> = {},
): Pool {
  const options = Object.entries(settings)
    .map(([name, value]) => `-c ${name}=${value}`)
    .join(' ');
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: applicationName,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ...(options === '' ? {} : { options }),
  });
  absorbConnectionErrors(pool);
  return pool;
}

/** Runs `fn` inside BEGIN/COMMIT on one client, rolling back if it throws. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    // A backend being terminated answers with an error before its socket closes: until then pg still
    // takes the connection for a live one, and only a release with the error discards it.
    if (isConnectionError(err)) broken = err instanceof Error ? err : new Error(String(err));
    await client.query('ROLLBACK').catch((e: unknown) => {
      broken ??= e instanceof Error ? e : new Error(String(e));
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/** A statement: text and parameters, optionally a prepared statement's name. */
export interface Statement {
  name?: string;
  text: string;
  values?: unknown[];
}

/**
 * The statements pg-boss would run through its `db` option, captured without running them (each is
 * answered with `rows`): to run pg-boss's own SQL inside a statement of ours.
 */
export async function captureBossSql(
  run: (db: BossDb) => Promise<unknown>,
  rows: unknown[] = [],
): Promise<Array<{ text: string; values: unknown[] }>> {
  const captured: Array<{ text: string; values: unknown[] }> = [];
  await run({
    executeSql: async (text, values = []) => {
      captured.push({ text, values });
      return { rows };
    },
  });
  return captured;
}

/** What pg-boss's `db` option takes. */
export interface BossDb {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** Adapts a pg client to pg-boss's `db` option, so pg-boss writes join the caller's transaction. */
export function bossDb(client: Queryable): BossDb {
  return { executeSql: (text, values) => client.query(text, values) };
}
