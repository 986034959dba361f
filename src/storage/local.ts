/**
 * Storage on the local filesystem: each object one file. put() writes it to a temporary name, fsyncs it,
 * then renames it; writeAt() writes in place, then (unless told not to) sync() fdatasyncs the file and
 * its directory.
 */
import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Config } from '../config.ts';
import { checkKey, type Body, type PutOptions, type Storage, type WriteAtOptions } from './storage.ts';

export class LocalStorage implements Storage {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  #path(key: string): string {
    return path.join(this.root, ...checkKey(key));
  }

  async put(key: string, body: Body, options: PutOptions = {}): Promise<{ size: number }> {
    const durable = options.durable ?? true;
    const file = this.#path(key);
    const dir = path.dirname(file);
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(tmp, 'w');
    let size = 0;
    try {
      if (typeof body === 'string' || Buffer.isBuffer(body)) {
        const buf = typeof body === 'string' ? Buffer.from(body) : body;
        await handle.write(buf);
        size = buf.length;
      } else {
        for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          await handle.write(buf);
          size += buf.length;
        }
      }
      // The bytes reach the disk before the name points at them: a crash leaves the old object or the new one.
      if (durable) await handle.sync();
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
    await handle.close();
    await rename(tmp, file);
    if (durable) await syncDir(dir);
    return { size };
  }

  async writeAt(key: string, offset: number, buf: Buffer, options: WriteAtOptions = {}): Promise<void> {
    const durable = options.durable ?? true;
    const file = this.#path(key);
    if (offset === 0) await mkdir(path.dirname(file), { recursive: true });
    const handle = await open(file, offset === 0 ? constants.O_WRONLY | constants.O_CREAT : constants.O_WRONLY);
    try {
      const { size } = await handle.stat();
      if (size < offset) throw new Error(`${key} holds ${size} bytes, fewer than the offset ${offset} to write at`);
      for (let done = 0; done < buf.length;)
        done += (await handle.write(buf, done, buf.length - done, offset + done)).bytesWritten;
      if (options.truncate === true && size > offset + buf.length) await handle.truncate(offset + buf.length);
    } finally {
      await handle.close();
    }
    if (durable) await this.sync(key);
  }

  async sync(key: string): Promise<void> {
    const file = this.#path(key);
    const handle = await open(file, constants.O_WRONLY);
    try {
      // Data and size.
      await handle.datasync();
    } finally {
      await handle.close();
    }
    // Its name too, in case a write at offset 0 created it (an unchanged directory syncs at once).
    await syncDir(path.dirname(file));
  }

  async get(key: string): Promise<{ stream: Readable; size: number } | undefined> {
    const s = await this.stat(key);
    if (s === undefined) return undefined;
    return { stream: createReadStream(this.#path(key)), size: s.size };
  }

  async stat(key: string): Promise<{ size: number } | undefined> {
    try {
      const s = await stat(this.#path(key));
      return s.isFile() ? { size: s.size } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    try {
      const names = await readdir(this.#path(prefix));
      return names.filter((n) => !n.endsWith('.tmp')).sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key), { recursive: true, force: true });
  }
}

/** Makes a rename durable: the directory entry itself is flushed. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The storage a service uses: the local filesystem under `<data dir>/artifacts`. */
export function createStorage(config: Config): Storage {
  return new LocalStorage(path.join(config.dataDir, 'artifacts'));
}
