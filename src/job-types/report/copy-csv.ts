/**
 * `COPY … TO STDOUT (FORMAT csv)` read into one buffer of CRLF-ended lines, as a node-postgres
 * Submittable: pg parses the protocol and hands each CopyData message to `handleCopyData`.
 *
 * Postgres sends every row of a COPY TO as exactly one CopyData message, ending in the LF that ends the
 * row (an LF inside a quoted field is data, in the middle of the message). So the message's last byte
 * is the line end, and it becomes CRLF without scanning the line: each row costs one copy into a block,
 * where pg-copy-streams made a Buffer per row, a stream chunk per socket read, and a second pass over
 * every byte to find the line ends cost as much again.
 */
import type { Connection, Submittable } from 'pg';

/** Rows are copied into blocks of this size (a 10,000-row chunk of demo rows is about 0.9 MB). */
const BLOCK_BYTES = 1 << 20;
/**
 * Free blocks a pool keeps: enough for the chunks being read and written at once by a few reports (a
 * report has at most two: one being written, the next being read).
 */
const MAX_FREE_BLOCKS = 8;
const CR = 0x0d;
const LF = 0x0a;

/**
 * First blocks of COPYs, reused from chunk to chunk: a megabyte allocated and dropped per chunk let the
 * process's peak memory creep up with the number of chunks (garbage awaiting GC, and freed blocks the
 * allocator kept); reused, it stays the same at any row count.
 */
export class BlockPool {
  readonly #free: Buffer[] = [];

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafe(BLOCK_BYTES);
  }

  /** Gives back a block from take() once nothing reads it any more. */
  give(block: Buffer): void {
    if (block.length === BLOCK_BYTES && this.#free.length < MAX_FREE_BLOCKS) this.#free.push(block);
  }
}

/** A COPY's CSV lines; `release` hands their memory back to the pool once they have been written out. */
export interface CsvLines {
  lines: Buffer;
  release: () => void;
}

export class CopyCsvLines implements Submittable {
  readonly text: string;
  /** The CSV lines, CRLF-ended, once the COPY has ended. */
  readonly done: Promise<CsvLines>;
  readonly #pool: BlockPool;
  readonly #first: Buffer;
  #blocks: Buffer[] = [];
  #block: Buffer;
  #at = 0;
  #resolve: (lines: CsvLines) => void = () => undefined;
  #reject: (err: Error) => void = () => undefined;

  constructor(text: string, pool = new BlockPool()) {
    this.text = text;
    this.#pool = pool;
    this.#first = pool.take();
    this.#block = this.#first;
    this.done = new Promise<CsvLines>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  submit(connection: Connection): void {
    connection.query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    const row = msg.chunk;
    if (row.length === 0 || row[row.length - 1] !== LF) {
      this.#reject(new Error('a COPY row did not end with a line feed'));
      return;
    }
    if (this.#at + row.length + 1 > this.#block.length) {
      this.#blocks.push(this.#block.subarray(0, this.#at));
      this.#block = Buffer.allocUnsafe(Math.max(BLOCK_BYTES, row.length + 1));
      this.#at = 0;
    }
    this.#at += row.copy(this.#block, this.#at, 0, row.length - 1);
    this.#block[this.#at++] = CR;
    this.#block[this.#at++] = LF;
  }

  handleReadyForQuery(): void {
    const last = this.#block.subarray(0, this.#at);
    // Most chunks fit in one block: then no second copy, and the block goes back once written out.
    if (this.#blocks.length === 0) {
      let released = false;
      const release = () => {
        if (!released) this.#pool.give(this.#first);
        released = true;
      };
      this.#resolve({ lines: last, release });
      return;
    }
    const lines = Buffer.concat([...this.#blocks, last]);
    this.#pool.give(this.#first);
    this.#resolve({ lines, release: () => undefined });
  }

  /** pg's one failure path (an error from the server or the connection); no ReadyForQuery follows. */
  handleError(err: Error): void {
    this.#reject(err);
  }

  // The other messages a COPY's query can get carry nothing for us.
  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  /** Only a COPY FROM would ask for data: refuse it, as pg's own queries do. */
  handleCopyInResponse(connection: Connection & { sendCopyFail(message: string): void }): void {
    // pg's Connection has sendCopyFail; its typings leave it out.
    connection.sendCopyFail('not a COPY TO');
  }
}
