/**
 * Which sources a tenant may report on, and what their columns are. The allow-list comes from
 * configuration; the columns are read from the report database's catalogue (information_schema), so
 * input is checked against real column names and only those names ever reach SQL, quoted.
 */
import { escapeIdentifier } from 'pg';
import type { Queryable } from '../../db/pool.ts';

/** How a column can be used: metrics need `integer`/`decimal`, the time range needs `time`. */
export type ColumnKind = 'integer' | 'decimal' | 'float' | 'time' | 'date' | 'text' | 'boolean' | 'other';

export interface Column {
  name: string;
  kind: ColumnKind;
  /** The type as Postgres names it (for messages). */
  type: string;
  /** The column's base type as a quoted, schema-qualified name, to cast values to in SQL (e.g. `"pg_catalog"."int8"`). */
  sqlType: string;
}

export interface Source {
  /** As the client names it: `table` or `schema.table`. */
  name: string;
  /** The quoted, schema-qualified name for SQL. */
  sql: string;
  columns: Column[];
  /** The column keyset pagination orders by: the single-column primary key, or a column named `id`. */
  key: Column;
  /** The column `filters.from`/`filters.to` apply to: the first timestamp or date column, if any. */
  time: Column | undefined;
}

/**
 * The allow-list: `LONGHAUL_REPORT_SOURCES` entries are `source` (every tenant) or `tenant:source`
 * (only the tenant of that name).
 */
export class SourceAllowList {
  readonly #everyone = new Set<string>();
  readonly #perTenant = new Map<string, Set<string>>();

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const at = entry.lastIndexOf(':');
      if (at < 0) {
        this.#everyone.add(entry);
        continue;
      }
      const tenant = entry.slice(0, at);
      const set = this.#perTenant.get(tenant) ?? new Set<string>();
      set.add(entry.slice(at + 1));
      this.#perTenant.set(tenant, set);
    }
  }

  allows(tenantName: string, source: string): boolean {
    return this.#everyone.has(source) || (this.#perTenant.get(tenantName)?.has(source) ?? false);
  }

  /** The sources a tenant may use, for error messages. */
  sourcesOf(tenantName: string): string[] {
    return [...new Set([...this.#everyone, ...(this.#perTenant.get(tenantName) ?? [])])].sort();
  }
}

const KINDS: Record<string, ColumnKind> = {
  smallint: 'integer',
  integer: 'integer',
  bigint: 'integer',
  numeric: 'decimal',
  real: 'float',
  'double precision': 'float',
  'timestamp with time zone': 'time',
  'timestamp without time zone': 'time',
  date: 'date',
  text: 'text',
  'character varying': 'text',
  character: 'text',
  boolean: 'boolean',
};

/** `table` or `schema.table`, each an unquoted lowercase identifier. */
const SOURCE_NAME = /^(?:([a-z_][a-z0-9_]{0,62})\.)?([a-z_][a-z0-9_]{0,62})$/;

/** How long an introspected source is trusted before it is read again (picks up schema changes). */
const CATALOGUE_TTL_MS = 60_000;

export class SourceCatalogue {
  readonly #cache = new Map<string, { at: number; source: Promise<Source | undefined> }>();
  readonly #db: () => Queryable;

  /** `db` gives the report database's pool (called lazily, so nothing connects until first use). */
  constructor(db: () => Queryable) {
    this.#db = db;
  }

  /** The source's description, or undefined if no such table or view exists (or it has no usable key). */
  get(name: string): Promise<Source | undefined> {
    const hit = this.#cache.get(name);
    if (hit !== undefined && Date.now() - hit.at < CATALOGUE_TTL_MS) return hit.source;
    const source = introspect(this.#db(), name);
    this.#cache.set(name, { at: Date.now(), source });
    source.catch(() => this.#cache.delete(name));
    return source;
  }
}

async function introspect(db: Queryable, name: string): Promise<Source | undefined> {
  const m = SOURCE_NAME.exec(name);
  if (m === null || m[2] === undefined) return undefined;
  const schema = m[1] ?? 'public';
  const table = m[2];
  const { rows } = await db.query<{
    column_name: string;
    data_type: string;
    udt_schema: string;
    udt_name: string;
    is_key: boolean;
  }>(
    `SELECT c.column_name, c.data_type, c.udt_schema, c.udt_name,
            EXISTS (SELECT 1 FROM information_schema.table_constraints t
                      JOIN information_schema.key_column_usage k
                        ON k.constraint_schema = t.constraint_schema AND k.constraint_name = t.constraint_name
                     WHERE t.table_schema = c.table_schema AND t.table_name = c.table_name
                       AND t.constraint_type = 'PRIMARY KEY' AND k.column_name = c.column_name
                       AND (SELECT count(*) FROM information_schema.key_column_usage k2
                             WHERE k2.constraint_schema = t.constraint_schema AND k2.constraint_name = t.constraint_name) = 1) AS is_key
       FROM information_schema.columns c
      WHERE c.table_schema = $1 AND c.table_name = $2
      ORDER BY c.ordinal_position`,
    [schema, table],
  );
  if (rows.length === 0) return undefined;
  const columns: Column[] = rows.map((r) => ({
    name: r.column_name,
    kind: KINDS[r.data_type] ?? 'other',
    type: r.data_type,
    sqlType: `${escapeIdentifier(r.udt_schema)}.${escapeIdentifier(r.udt_name)}`,
  }));
  const keyName = rows.find((r) => r.is_key)?.column_name ?? (columns.some((c) => c.name === 'id') ? 'id' : undefined);
  const key = columns.find((c) => c.name === keyName);
  if (key === undefined || !['integer', 'text', 'time', 'date'].includes(key.kind)) return undefined;
  return {
    name,
    sql: `${escapeIdentifier(schema)}.${escapeIdentifier(table)}`,
    columns,
    key,
    time: columns.find((c) => c.kind === 'time' || c.kind === 'date'),
  };
}
