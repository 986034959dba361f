/**
 * Where job artifacts (and the parts they are built from) live. A small interface so that a deployment
 * can put them elsewhere (an object store, a shared volume); the built-in one is the local filesystem
 * under `<data dir>/artifacts`. Keys are `/`-separated paths of safe segments.
 */
import type { Readable } from 'node:stream';

/** Bytes to store: a whole buffer or string, or a stream (read to its end). */
export type Body = Buffer | string | Readable | AsyncIterable<Uint8Array>;

export interface PutOptions {
  /** Whether the object must be on disk when put() resolves; false skips the fsyncs (a crash may lose it). (Default: true) */
  durable?: boolean;
}

export interface WriteAtOptions extends PutOptions {
  /** Cut the object at the end of the written bytes. (Default: false) */
  truncate?: boolean;
}

export interface Storage {
  /**
   * Stores `body` under `key`, replacing what was there. The object appears whole or not at all, and is
   * durable (on disk, or acknowledged by the store) when the promise resolves, unless `durable` is false.
   */
  put(key: string, body: Body, options?: PutOptions): Promise<{ size: number }>;
  /**
   * Writes `buf` into the object `key` at byte `offset`, keeping what it holds before `offset` (and, unless
   * `truncate`, after the written bytes): for an object built up piece by piece, such as a report's CSV
   * chunk after chunk, where a redone piece rewrites the same bytes at the same place. Offset 0 creates the
   * object if needed; a larger offset throws if the object is shorter (it would leave a hole). Durable when
   * the promise resolves unless `durable` is false. Readers may see the object half-written until the writer
   * is done with it.
   */
  writeAt(key: string, offset: number, buf: Buffer, options?: WriteAtOptions): Promise<void>;
  /**
   * Makes what writeAt() wrote into `key` with `durable: false` durable, as `durable: true` would have:
   * for a writer that lets the sync run while it carries on (a report's next chunk runs while this
   * one's bytes reach the disk). Throws if there is no such object.
   */
  sync(key: string): Promise<void>;
  /** The object's bytes as a stream, or undefined if there is none. */
  get(key: string): Promise<{ stream: Readable; size: number } | undefined>;
  /** Size of the object, or undefined if there is none. */
  stat(key: string): Promise<{ size: number } | undefined>;
  /** Names directly under `prefix` (objects and folders), sorted; empty if none. */
  list(prefix: string): Promise<string[]>;
  /** Deletes the object `key`, or everything under it; no error if absent. */
  delete(key: string): Promise<void>;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Throws unless every segment of `key` is a plain name (no `..`, no absolute paths, no separators). */
export function checkKey(key: string): string[] {
  const parts = key.split('/');
  if (parts.length === 0 || !parts.every((p) => SEGMENT.test(p) && p !== '..'))
    throw new Error(`invalid storage key ${JSON.stringify(key)}`);
  return parts;
}
