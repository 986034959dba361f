/**
 * Applies `sql/NNN_name.sql` in order, each once, under an advisory lock so that processes
 * starting together take turns. Forward-only: an applied file must never change (its checksum is kept).
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from './pool.ts';

export const SQL_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'sql');
/** Arbitrary, fixed key of the session advisory lock that serialises migrations. */
const MIGRATION_LOCK_KEY = 7_140_001;

export async function migrate(pool: Pool, dir = SQL_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort();
  assertUniqueNumbers(files);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ name: string; checksum: string }>(
      'SELECT name, checksum FROM schema_migrations',
    );
    const done = new Map(rows.map((r) => [r.name, r.checksum]));
    for (const file of files) {
      const text = await readFile(path.join(dir, file), 'utf8');
      const checksum = createHash('sha256').update(text).digest('hex');
      const prior = done.get(file);
      if (prior !== undefined) {
        if (prior !== checksum)
          throw new Error(`migration ${file} changed after it was applied; add a new migration instead`);
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(text);
        await client.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [file, checksum]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${file} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(file);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    client.release();
  }
  return applied;
}

/** Two files with one number would apply in name order, an order nobody chose: refuse them. */
export function assertUniqueNumbers(files: string[]): void {
  const seen = new Map<string, string>();
  for (const file of files) {
    const number = file.slice(0, 3);
    const other = seen.get(number);
    if (other !== undefined)
      throw new Error(`migrations ${other} and ${file} share the number ${number}; renumber one`);
    seen.set(number, file);
  }
}
