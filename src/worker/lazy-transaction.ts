/**
 * The transaction a job step writes through (`ctx.db`). It begins on the first query, so a step that
 * writes nothing costs no connection while it runs, and its checkpoint is a single autocommit statement.
 */
import type { Pool, PoolClient, Queryable } from '../db/pool.ts';

export class LazyTransaction {
  readonly #pool: Pool;
  readonly #after: Promise<unknown> | undefined;
  #client: PoolClient | undefined;
  #opening: Promise<PoolClient> | undefined;
  #done = false;
  /** The Queryable handed to job code: every query joins this transaction. */
  readonly db: Queryable;

  /** `after`: begins only once this has settled, and fails if it failed (the previous step's checkpoint). (Default: none) */
  constructor(pool: Pool, after?: Promise<unknown>) {
    this.#pool = pool;
    this.#after = after;
    const run = async (text: unknown, values?: unknown) => {
      const client = await this.client();
      // pg's overloads are many; the job's own arguments are passed through untouched.
      return (client.query as (t: unknown, v?: unknown) => Promise<unknown>)(text, values);
    };
    this.db = { query: run } as unknown as Queryable;
  }

  /** True once a query has begun the transaction. */
  get begun(): boolean {
    return this.#opening !== undefined;
  }

  /** The transaction's client, beginning it if needed. */
  client(): Promise<PoolClient> {
    if (this.#done) return Promise.reject(new Error('the step transaction is already finished'));
    this.#opening ??= (async () => {
      await this.#after;
      const c = await this.#pool.connect();
      try {
        await c.query('BEGIN');
      } catch (err) {
        c.release(err instanceof Error ? err : true);
        throw err;
      }
      this.#client = c;
      return c;
    })();
    return this.#opening;
  }

  /**
   * Runs `fn` as the last statements of the transaction and commits, or, if nothing began it, runs
   * `fn` on the pool. `fn` returning `rollback: true` rolls everything back instead.
   */
  async finish<T>(
    fn: (db: Queryable, inTransaction: boolean) => Promise<{ value: T; rollback?: boolean }>,
  ): Promise<T> {
    if (!this.begun) {
      this.#done = true;
      return (await fn(this.#pool, false)).value;
    }
    const client = await this.client();
    this.#done = true;
    try {
      const out = await fn(client, true);
      await client.query(out.rollback === true ? 'ROLLBACK' : 'COMMIT');
      client.release();
      this.#client = undefined;
      this.#opening = undefined;
      return out.value;
    } catch (err) {
      await this.rollback();
      throw err;
    }
  }

  /** Rolls back (if begun) and releases the connection. Safe to call more than once. */
  async rollback(): Promise<void> {
    this.#done = true;
    const c = this.#client ?? (this.#opening === undefined ? undefined : await this.#opening.catch(() => undefined));
    this.#client = undefined;
    this.#opening = undefined;
    if (c === undefined) return;
    try {
      await c.query('ROLLBACK');
      c.release();
    } catch (err) {
      c.release(err instanceof Error ? err : true);
    }
  }
}
