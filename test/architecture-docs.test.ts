/**
 * docs/architecture.md's table of tables stays true to the code: for each table that sql/ creates, the
 * file of src/ whose SQL writes it (test/support/sql-access.ts finds the writes) and the other files
 * whose SQL reads it (FROM, JOIN). Moving a statement from one module to another fails here with the
 * row to write; test/architecture-writers.test.ts holds every table to one writer.
 * Its table of layers is the order that .dependency-cruiser.mjs (run by `npm run lint`) enforces, and
 * its layout tree draws every room of src/, packages/ and clients/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../scripts/openapi.ts';
import { access, ARCHITECTURE_DOC as FILE, documentedTables, type Access } from './support/sql-access.ts';

const list = (files: string[]) => (files.length === 0 ? '–' : files.map((f) => `\`${f}\``).join(', '));
const rowOf = (a: Access) => `| \`${a.table}\` | ${a.created} | ${list(a.writers)} | ${list(a.readers)} |`;

describe('docs/architecture.md', () => {
  it('names, for each table in sql/, the file whose SQL writes it and those that read it', () => {
    const written = new Map(documentedTables().map((row) => [row.table, row.line]));
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

  it('draws every room of src/, packages/ and clients/ in the layout tree', () => {
    const doc = readFileSync(path.join(ROOT, FILE), 'utf8');
    const tree = /## Rooms\n[\s\S]*?```text\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
    const drawn = new Set(tree.split('\n').flatMap((line) => line.match(/[\w.-]+\/?/g) ?? []));
    const missing = ['src', 'packages', 'clients'].flatMap((dir) =>
      readdirSync(path.join(ROOT, dir), { withFileTypes: true })
        .map((e) => (e.isDirectory() ? `${e.name}/` : e.name))
        .filter((name) => !drawn.has(name))
        .map((name) => `${dir}/${name}`),
    );
    expect(missing, `add a line for each to the tree under "## Rooms" in ${FILE}`).toEqual([]);
  });
});
