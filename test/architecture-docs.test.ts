/**
 * docs/architecture.md's table of tables stays true to the code: for each table that sql/ creates, the
 * files of src/ whose SQL writes it (INSERT INTO, UPDATE, DELETE FROM) and the other files whose SQL
 * reads it (FROM, JOIN). Moving a statement from one module to another fails here with the row to write.
 * Its table of layers is the order that .dependency-cruiser.mjs (run by `npm run lint`) enforces.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../scripts/openapi.ts';

const FILE = 'docs/architecture.md';

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(`${dir}/${e.name}`) : e.name.endsWith('.ts') ? [`${dir}/${e.name}`] : [],
  );
}

/** Each table sql/ creates, with the migration that creates it. */
function tables(): Map<string, string> {
  const created = new Map<string, string>();
  for (const file of readdirSync(path.join(ROOT, 'sql')).sort()) {
    for (const m of readFileSync(path.join(ROOT, 'sql', file), 'utf8').matchAll(/CREATE TABLE (\w+)/gi)) {
      created.set(m[1] as string, `sql/${file}`);
    }
  }
  return created;
}

/** The code of a file without its comment lines, so prose that names a table counts for nothing. */
function code(file: string): string {
  return readFileSync(path.join(ROOT, file), 'utf8')
    .split('\n')
    .filter((l) => !/^\s*(\/\/|\*|\/\*)/.test(l))
    .join('\n');
}

interface Access {
  table: string;
  created: string;
  writers: string[];
  readers: string[];
}

function access(): Access[] {
  const files = sourceFiles('src').map((f) => ({ name: f.replace(/^src\//, ''), code: code(f) }));
  return [...tables()].map(([table, created]) => {
    const writes = new RegExp(`\\b(INSERT\\s+INTO|UPDATE|DELETE\\s+FROM)\\s+${table}\\b`, 'i');
    const reads = new RegExp(`\\b(FROM|JOIN)\\s+${table}\\b`, 'i');
    const writers = files.filter((f) => writes.test(f.code)).map((f) => f.name);
    const readers = files.filter((f) => !writers.includes(f.name) && reads.test(f.code)).map((f) => f.name);
    return { table, created, writers, readers };
  });
}

const list = (files: string[]) => (files.length === 0 ? '–' : files.map((f) => `\`${f}\``).join(', '));
const rowOf = (a: Access) => `| \`${a.table}\` | ${a.created} | ${list(a.writers)} | ${list(a.readers)} |`;

describe('docs/architecture.md', () => {
  it('names, for each table in sql/, the files whose SQL writes it and those that read it', () => {
    const doc = readFileSync(path.join(ROOT, FILE), 'utf8').split('\n');
    const written = new Map<string, string>();
    for (const line of doc) {
      const table = /^\|\s*`(\w+)`\s*\|\s*sql\//.exec(line)?.[1];
      if (table !== undefined) written.set(table, line.trim());
    }
    const problems: string[] = [];
    const actual = access();
    for (const a of actual) {
      const have = written.get(a.table);
      if (have === undefined) problems.push(`add this row to the table of tables in ${FILE}: ${rowOf(a)}`);
      else if (have !== rowOf(a)) problems.push(`in ${FILE}, the row for ${a.table} must read: ${rowOf(a)}`);
    }
    for (const table of written.keys()) {
      if (!actual.some((a) => a.table === table))
        problems.push(`remove the row for ${table} from ${FILE}: sql/ creates no such table`);
    }
    expect(problems).toEqual([]);
  });

  it('lists the layers in the order that .dependency-cruiser.mjs enforces', async () => {
    const config = (await import(path.join(ROOT, '.dependency-cruiser.mjs'))) as { layers: string[][] };
    const documented: string[][] = [];
    for (const line of readFileSync(path.join(ROOT, FILE), 'utf8').split('\n')) {
      const m = /^\|\s*(\d+)\s*\|([^|]*)\|/.exec(line);
      if (m !== null)
        documented[Number(m[1]) - 1] = [...(m[2] as string).matchAll(/`([\w-]+)`/g)].map((r) => r[1] as string);
    }
    expect(documented).toEqual(config.layers);
  });
});
