/** The whole state a request could change: every table of longhaul's schema and pg-boss's job table. */
import type { Pool } from '../../src/db/pool.ts';

/** Each table's name → a digest of all its rows (equal digests: equal contents). */
export async function dbSnapshot(pool: Pool): Promise<Record<string, string>> {
  const { rows: tables } = await pool.query<{ name: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
      WHERE schemaname = 'public' OR (schemaname = 'pgboss' AND tablename = 'job') ORDER BY 1`,
  );
  const out: Record<string, string> = {};
  for (const { name } of tables) {
    const { rows } = await pool.query<{ n: number; digest: string | null }>(
      // An API key's last_used_at records that the key authenticated, which a refused request does too.
      `SELECT count(*)::int AS n, md5(string_agg(r, E'\\n' ORDER BY r)) AS digest
         FROM (SELECT (to_jsonb(t) - 'last_used_at')::text AS r FROM ${name} t) rows`,
    );
    out[name] = `${rows[0]?.n ?? 0} rows ${rows[0]?.digest ?? ''}`;
  }
  return out;
}
