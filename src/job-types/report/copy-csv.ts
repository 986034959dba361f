/**
 * `COPY … TO STDOUT (FORMAT csv)` read into one buffer of CRLF-ended lines, as a node-postgres
 * Submittable that reads the COPY's messages off the connection's socket itself, as pg-copy-streams
 * does, and hands the connection back to pg for the messages that end the query.
 *
 * Postgres sends every row of a COPY TO as exactly one CopyData message, ending in the LF that ends the
 * row (an LF inside a quoted field is data, in the middle of the message). So the message's last byte
 * is the line end, and it becomes CRLF without scanning the line: each row costs one copy into a block
 * and no object at all. (pg-copy-streams made a Buffer per row and a stream chunk per socket read, and
 * a second pass over every byte found the line ends; pg's own parser makes two objects per row. Objects
 * per row cost CPU and let the young generation of the heap grow, which showed as peak RSS that
 * depended on the run.)
 */
import type { EventEmitter } from 'node:events';
import type { Connection, Submittable } from 'pg';

/** Rows are copied into blocks of this size: about one default-sized chunk of demo rows (bench/RESULTS.md). */
const BLOCK_BYTES = 1 << 20;
/**
 * Free blocks a pool keeps: enough for the chunks being read and written at once by a few reports (a
 * report has at most two: one being written, the next being read).
 */
const MAX_FREE_BLOCKS = 8;
const CR = 0x0d;
const LF = 0x0a;
/** Backend message types (first byte of a message; then a 4-byte length that counts itself). */
const COPY_DATA = 0x64; // 'd'
const COPY_OUT_RESPONSE = 0x48; // 'H'
const NOTICE = 0x4e; // 'N'
const NOTIFICATION = 0x41; // 'A'
const PARAMETER_STATUS = 0x53; // 'S'
const HEADER_BYTES = 5;

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
  /** Bytes of the current CopyData message still to come. */
  #left = 0;
  /** The start of a message that the last socket read split. */
  #partial: Buffer | undefined;
  #stream: EventEmitter | undefined;
  #pgData: ((chunk: Buffer) => void) | undefined;
  #failed = false;
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

  /** Takes the socket's data from pg's parser, then sends the query (pg hands back an Error returned here). */
  submit(connection: Connection): Error | undefined {
    const stream = connection.stream;
    const listeners = stream.listeners('data');
    const pgData = listeners[0];
    if (listeners.length !== 1 || pgData === undefined)
      return new Error(`expected pg's one data listener on the connection, found ${listeners.length}`);
    this.#stream = stream;
    this.#pgData = pgData as (chunk: Buffer) => void;
    stream.removeListener('data', this.#pgData);
    stream.on('data', this.#onData);
    connection.query(this.text);
    return undefined;
  }

  readonly #onData = (data: Buffer): void => {
    if (this.#failed) return;
    let chunk = data;
    if (this.#partial !== undefined) {
      chunk = Buffer.concat([this.#partial, data]);
      this.#partial = undefined;
    }
    let i = 0;
    while (i < chunk.length) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, chunk.length - i);
        this.#at += chunk.copy(this.#block, this.#at, i, i + n);
        i += n;
        this.#left -= n;
        if (this.#left === 0 && !this.#endRow()) return;
        continue;
      }
      if (chunk.length - i < HEADER_BYTES) {
        this.#partial = Buffer.from(chunk.subarray(i));
        return;
      }
      const code = chunk[i];
      const length = chunk.readUInt32BE(i + 1) - 4;
      if (code === COPY_DATA) {
        if (length < 1) return this.#fail(new Error('an empty COPY row'));
        // Room for the whole row and its CR, so the row's bytes stay contiguous in one block.
        this.#reserve(length + 1);
        this.#left = length;
        i += HEADER_BYTES;
      } else if (code === COPY_OUT_RESPONSE || code === NOTICE || code === NOTIFICATION || code === PARAMETER_STATUS) {
        // Nothing the report needs (pg-copy-streams drops these too); skipped whole.
        if (chunk.length - i < HEADER_BYTES + length) {
          this.#partial = Buffer.from(chunk.subarray(i));
          return;
        }
        i += HEADER_BYTES + length;
      } else {
        // CopyDone or an ErrorResponse: the rows are over. pg parses the rest and calls handleReadyForQuery or handleError.
        this.#handBack(chunk.subarray(i));
        return;
      }
    }
  };

  /** A whole row is in the block: its closing LF becomes CRLF. */
  #endRow(): boolean {
    if (this.#block[this.#at - 1] !== LF) {
      this.#fail(new Error('a COPY row did not end with a line feed'));
      return false;
    }
    this.#block[this.#at - 1] = CR;
    this.#block[this.#at++] = LF;
    return true;
  }

  #reserve(bytes: number): void {
    if (this.#at + bytes <= this.#block.length) return;
    this.#blocks.push(this.#block.subarray(0, this.#at));
    this.#block = Buffer.allocUnsafe(Math.max(BLOCK_BYTES, bytes));
    this.#at = 0;
  }

  #handBack(rest: Buffer): void {
    const stream = this.#stream;
    const pgData = this.#pgData;
    if (stream === undefined || pgData === undefined) return;
    stream.removeListener('data', this.#onData);
    stream.on('data', pgData);
    this.#stream = undefined;
    if (rest.length > 0) pgData(rest);
  }

  /** Bad data: the query fails, and the connection (left in the middle of a COPY) must be dropped by its owner. */
  #fail(err: Error): void {
    this.#failed = true;
    this.#reject(err);
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
    this.#handBack(Buffer.alloc(0));
    this.#reject(err);
  }

  // The other messages that end a COPY's query carry nothing for us.
  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}

  /** Only a COPY FROM would ask for data: refuse it, as pg's own queries do. */
  handleCopyInResponse(connection: Connection & { sendCopyFail(message: string): void }): void {
    // pg's Connection has sendCopyFail; its typings leave it out.
    connection.sendCopyFail('not a COPY TO');
  }
}
