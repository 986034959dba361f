/**
 * Reads a report chunk from the source: its aggregates (one SQL query) and its rows as CSV (COPY), on two
 * connections at once, in one snapshot. The first connection exports its REPEATABLE READ snapshot, the
 * second imports it, so both statements see exactly the same rows; Postgres then works on both at once
 * (the COPY's text output and the aggregation use a core each) while Node only receives bytes.
 *
 * A read gives the aggregate rows as soon as they come (the aggregate query ends well before the COPY),
 * and a job can start its next chunk's read ahead (`readAhead`) as soon as they tell it where that chunk
 * begins: Postgres then reads the next chunk while this one's COPY ends, its CSV is written and its
 * checkpoint commits; the next `read` of exactly the same SQL takes it. A read is only a read: the
 * checkpoint still counts only what the job wrote, and a read ahead that is never taken is dropped.
 */
import type pg from 'pg';
import { BlockPool, CopyCsvLines, type CsvLines } from './copy-csv.ts';

/** A chunk's SQL: the values to set first, the aggregate query and the COPY of the same rows. */
export interface ChunkSql {
  /** `SELECT set_config(…), …` of every value (at least one), with `values` as its bind parameters. */
  set: { text: string; values: unknown[] };
  /** The chunk's aggregates. */
  aggregates: string;
  /** The chunk's rows as CSV (COPY … (FORMAT csv)). */
  copy: string;
}

/** Every column comes back as its text form: exact decimals, keys as the CSV shows them. */
const TEXT_TYPES = { getTypeParser: () => (v: string) => v };
const BEGIN = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
/** What pg_export_snapshot() returns (e.g. `00000003-0000001B-1`); checked before it is written into SET TRANSACTION SNAPSHOT. */
const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$/i;
/**
 * Reads ahead a job may have under way: the next chunk, and the one after it once the next one's
 * aggregates tell where it begins, so that reads run back to back whatever a chunk's write and checkpoint
 * take. Each holds two connections and, once read, a chunk's CSV bytes.
 */
const AHEAD_PER_JOB = 2;
/** Jobs whose reads ahead are kept (the oldest dropped first): bounds what jobs that stop without taking theirs leave in memory. */
const MAX_AHEAD_JOBS = 4;

export interface ChunkRead<Row> {
  /** The aggregate query's rows; they come first. */
  rows: Promise<Row[]>;
  /** The rows' CSV lines, CRLF-ended (when asked for); release them once written out. */
  csv: Promise<CsvLines | undefined>;
}

export class ChunkReader<Row extends Record<string, unknown>> {
  readonly #pool: () => pg.Pool;
  /** Reads started ahead, by job id, in the order they were started, with the SQL they read. */
  readonly #ahead = new Map<string, Array<{ sql: string; read: ChunkRead<Row> }>>();
  readonly #blocks = new BlockPool();
  /** Connections are taken two at a time under this lock, so readers never each hold one and wait for a second. */
  #taking: Promise<unknown> = Promise.resolve();

  constructor(pool: () => pg.Pool) {
    this.#pool = pool;
  }

  /**
   * `job`'s chunk: the read started ahead for exactly this SQL, or a new one. Reads ahead started before
   * the one taken are for chunks already past, and a chunk not read ahead (a redo) drops them all.
   */
  read(job: string, sql: ChunkSql, csv: boolean): ChunkRead<Row> {
    const key = sqlKey(sql, csv);
    const queue = this.#ahead.get(job) ?? [];
    const at = queue.findIndex((a) => a.sql === key);
    const rest = at < 0 ? [] : queue.slice(at + 1);
    if (rest.length > 0) this.#ahead.set(job, rest);
    else this.#ahead.delete(job);
    return queue[at]?.read ?? this.#read(sql, csv);
  }

  /** Starts reading one of `job`'s next chunks now, unless that read is under way already, for a later read() to take. */
  readAhead(job: string, sql: ChunkSql, csv: boolean): ChunkRead<Row> {
    const key = sqlKey(sql, csv);
    const queue = this.#ahead.get(job) ?? [];
    const started = queue.find((a) => a.sql === key);
    if (started !== undefined) return started.read;
    const read = this.#read(sql, csv);
    queue.push({ sql: key, read });
    while (queue.length > AHEAD_PER_JOB) queue.shift();
    this.#ahead.delete(job);
    this.#ahead.set(job, queue);
    for (const oldest of this.#ahead.keys()) {
      if (this.#ahead.size <= MAX_AHEAD_JOBS) break;
      this.#ahead.delete(oldest);
    }
    return read;
  }

  /** The aggregate query's rows, and (if `csv`) the COPY output of the same rows. */
  #read(sql: ChunkSql, csv: boolean): ChunkRead<Row> {
    let rowsCame: (rows: Row[]) => void = () => undefined;
    let rowsFailed: (err: unknown) => void = () => undefined;
    const rows = new Promise<Row[]>((resolve, reject) => {
      rowsCame = resolve;
      rowsFailed = reject;
    });
    const lines = this.#both(sql, csv, rowsCame);
    // A failure before the rows came fails them too (after, it is a no-op).
    lines.catch(rowsFailed);
    // Neither may be an unhandled rejection when its reader stops at the other one (or never reads);
    // the promises handed out still reject.
    rows.catch(() => undefined);
    lines.catch(() => undefined);
    return { rows, csv: lines };
  }

  async #both(sql: ChunkSql, csv: boolean, rowsCame: (rows: Row[]) => void): Promise<CsvLines | undefined> {
    const clients = await this.#take(csv ? 2 : 1);
    const [a, b] = clients;
    let failed: Error | undefined;
    try {
      if (a === undefined) throw new Error('no connection to the report source');
      await a.query(BEGIN);
      const { rows: exported } = await a.query<{ snapshot: string }>({
        text: `${sql.set.text}, pg_export_snapshot() AS snapshot`,
        values: sql.set.values,
      });
      const aggregates = a.query<Row>({ text: sql.aggregates, types: TEXT_TYPES }).then((r) => rowsCame(r.rows));
      const lines = b === undefined ? undefined : copyIn(b, exported[0]?.snapshot ?? '', sql, this.#blocks);
      // The exporting transaction stays open until the COPY's has imported the snapshot (both end together here).
      const [, copied] = await Promise.all([aggregates, lines]);
      await Promise.all(clients.map((c) => c.query('COMMIT')));
      return copied;
    } catch (err) {
      failed = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      // After an error a connection may be in the middle of a COPY: drop it rather than reuse it.
      for (const c of clients) c.release(failed);
    }
  }

  async #take(n: number): Promise<pg.PoolClient[]> {
    const pool = this.#pool();
    const taken = this.#taking.then(async () => {
      const out: pg.PoolClient[] = [];
      try {
        for (let i = 0; i < n; i++) out.push(await pool.connect());
      } catch (err) {
        for (const c of out) c.release();
        throw err;
      }
      return out;
    });
    this.#taking = taken.catch(() => undefined);
    return taken;
  }
}

function sqlKey(sql: ChunkSql, csv: boolean): string {
  return JSON.stringify([sql, csv]);
}

/** The COPY of the chunk's rows in the imported snapshot, read to its end, as CRLF-ended lines. */
async function copyIn(client: pg.PoolClient, snapshot: string, sql: ChunkSql, blocks: BlockPool): Promise<CsvLines> {
  if (!SNAPSHOT_ID.test(snapshot)) throw new Error(`unexpected snapshot id ${JSON.stringify(snapshot)}`);
  // One round trip: a simple query may hold both, and the snapshot is set first thing in the transaction.
  await client.query(`${BEGIN}; SET TRANSACTION SNAPSHOT '${snapshot}'`);
  await client.query(sql.set);
  return client.query(new CopyCsvLines(sql.copy, blocks)).done;
}
