/**
 * Which files of src/ write and read each table that sql/ creates, found by reading their SQL text. The
 * architecture tests hold docs/architecture.md's table of tables and the one-writer rule to it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../scripts/openapi.ts';

/** The file that documents each table's owner and readers. */
export const ARCHITECTURE_DOC = 'docs/architecture.md';

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(`${dir}/${e.name}`) : e.name.endsWith('.ts') ? [`${dir}/${e.name}`] : [],
  );
}

/** Each table sql/ creates, with the migration that creates it. */
export function tables(): Map<string, string> {
  const created = new Map<string, string>();
  for (const file of readdirSync(path.join(ROOT, 'sql')).sort()) {
    const text = readFileSync(path.join(ROOT, 'sql', file), 'utf8');
    for (const m of text.matchAll(/CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:public\.)?"?(\w+)/gi)) {
      created.set((m[1] as string).toLowerCase(), `sql/${file}`);
    }
  }
  return created;
}

/** A file's code without its comment lines (TypeScript's and SQL's), so prose that names a table counts for nothing. */
function code(file: string): string {
  return readFileSync(path.join(ROOT, file), 'utf8')
    .split('\n')
    .filter((l) => !/^\s*(\/\/|\*|\/\*|--)/.test(l))
    .join('\n');
}

/**
 * A table named in a statement: optionally ONLY, schema-qualified or quoted; or a name interpolated at run
 * time. The schema, if any, is captured first: ours are in `public`, and a table of another schema
 * (pg-boss's `pgboss`) is that system's, not one of ours.
 */
const TARGET = String.raw`(?:ONLY\s+)?(?:"?(\w+)"?\.)?("?\w+"?|\$\{[^}]*\})`;

/**
 * Statements that write a table, each capturing the table (a TRUNCATE its whole list). Data-modifying
 * CTEs and `INSERT … ON CONFLICT DO UPDATE` are found by their INSERT INTO, UPDATE or DELETE FROM; an
 * `UPDATE` of a row lock (`FOR UPDATE OF d`, `DO UPDATE SET`) names no table and is passed over.
 */
const WRITES = [
  new RegExp(String.raw`\bINSERT\s+INTO\s+${TARGET}`, 'gi'),
  new RegExp(String.raw`\bUPDATE\s+${TARGET}`, 'gi'),
  new RegExp(String.raw`\bDELETE\s+FROM\s+${TARGET}`, 'gi'),
  new RegExp(String.raw`\bMERGE\s+INTO\s+${TARGET}`, 'gi'),
  new RegExp(String.raw`\bCOPY\s+${TARGET}(?:\s*\([^)]*\))?\s+FROM\b`, 'gi'),
];
const TRUNCATE =
  /\bTRUNCATE\s+(?:TABLE\s+)?((?:(?:ONLY\s+)?(?:public\.)?"?\w+"?\s*,\s*)*(?:ONLY\s+)?(?:public\.)?"?\w+"?)/gi;
const NOT_TABLES = new Set(['of', 'set', 'only', 'table', 'nowait', 'skip']);

export interface Write {
  /** The table as written in the statement, lower case without quotes, or `${…}` when named at run time. */
  table: string;
  /** The words that write it, as in the file. */
  statement: string;
}

/** Every write that a file's SQL makes. */
export function writesIn(text: string): Write[] {
  const found: Write[] = [];
  for (const re of WRITES) {
    for (const m of text.matchAll(re)) {
      const schema = m[1]?.toLowerCase();
      if (schema !== undefined && schema !== 'public') continue;
      const table = (m[2] as string).replace(/"/g, '').toLowerCase();
      if (!NOT_TABLES.has(table)) found.push({ table, statement: m[0].replace(/\s+/g, ' ') });
    }
  }
  for (const m of text.matchAll(TRUNCATE)) {
    for (const name of (m[1] as string).split(',')) {
      const table = name
        .trim()
        .replace(/^ONLY\s+/i, '')
        .replace(/^public\./i, '')
        .replace(/"/g, '')
        .toLowerCase();
      found.push({ table, statement: m[0].replace(/\s+/g, ' ') });
    }
  }
  return found;
}

export interface SourceFile {
  /** The path under src/, as the docs name it (`webhooks/store.ts`). */
  name: string;
  code: string;
  writes: Write[];
}

/** Every TypeScript file of src/ with its code and the writes its SQL makes. */
export function sources(): SourceFile[] {
  return sourceFiles('src').map((f) => {
    const text = code(f);
    return { name: f.replace(/^src\//, ''), code: text, writes: writesIn(text) };
  });
}

export interface Access {
  table: string;
  created: string;
  writers: string[];
  readers: string[];
}

/**
 * Tables that a trigger function of sql/ writes, each with the table whose changes fire it: a write to
 * that table is a write to them, so their writers are its writers.
 */
export function triggerWritten(): Map<string, string> {
  const functions = new Map<string, Write[]>();
  const written = new Map<string, string>();
  for (const file of readdirSync(path.join(ROOT, 'sql')).sort()) {
    const text = readFileSync(path.join(ROOT, 'sql', file), 'utf8');
    for (const m of text.matchAll(
      /CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(\)\s*RETURNS\s+trigger\b[^$]*\$\$([\s\S]*?)\$\$/gi,
    ))
      functions.set((m[1] as string).toLowerCase(), writesIn(m[2] as string));
    for (const m of text.matchAll(
      /CREATE\s+TRIGGER\s+\w+\s+[^;]*?\bON\s+(\w+)[^;]*?\bEXECUTE\s+(?:FUNCTION|PROCEDURE)\s+(\w+)/gi,
    ))
      for (const w of functions.get((m[2] as string).toLowerCase()) ?? [])
        written.set(w.table, (m[1] as string).toLowerCase());
  }
  return written;
}

/**
 * For each table sql/ creates: the files whose SQL writes it (for a table a trigger writes, those that
 * write the table the trigger is on), and the other files whose SQL reads it.
 */
export function access(files = sources()): Access[] {
  const byTrigger = triggerWritten();
  return [...tables()].map(([table, created]) => {
    const reads = new RegExp(`\\b(FROM|JOIN)\\s+${table}\\b`, 'i');
    const firing = byTrigger.get(table) ?? table;
    const writers = files.filter((f) => f.writes.some((w) => w.table === firing)).map((f) => f.name);
    const readers = files.filter((f) => !writers.includes(f.name) && reads.test(f.code)).map((f) => f.name);
    return { table, created, writers, readers };
  });
}

export interface DocumentedTable {
  table: string;
  /** The row as it stands. */
  line: string;
  /** The modules named in the owner column. */
  owners: string[];
}

/** The rows of docs/architecture.md's table of tables (those whose second column names a migration). */
export function documentedTables(): DocumentedTable[] {
  const rows: DocumentedTable[] = [];
  for (const line of readFileSync(path.join(ROOT, ARCHITECTURE_DOC), 'utf8').split('\n')) {
    const m = /^\|\s*`(\w+)`\s*\|\s*sql\/[^|]*\|([^|]*)\|/.exec(line);
    if (m === null) continue;
    const owners = [...(m[2] as string).matchAll(/`([^`]+)`/g)].map((o) => o[1] as string);
    rows.push({ table: m[1] as string, line: line.trim(), owners });
  }
  return rows;
}

/** Whether a module named in the docs (a path under src/) exists. */
export function moduleExists(name: string): boolean {
  return existsSync(path.join(ROOT, 'src', name));
}
