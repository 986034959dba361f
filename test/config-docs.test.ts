/**
 * The table in docs/configuration.md is src/config.ts's CONFIG_VARIABLES, row for row. A variable added,
 * removed or changed on one side only fails here, and the message gives the exact row to write.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, type ConfigVariable } from '../src/config.ts';

const ROOT = path.join(import.meta.dirname, '..');
const FILE = 'docs/configuration.md';

const cells = (line: string) =>
  line
    .trim()
    .replace(/^\||\|$/g, '')
    .split('|')
    .map((c) => c.trim());

const rowOf = (v: ConfigVariable) => `| \`${v.name}\` | ${v.default} | ${v.description} |`;

/** Each variable's row in the file, as its cells; a name written twice is reported. */
function documented(markdown: string): { rows: Map<string, string[]>; twice: string[] } {
  const rows = new Map<string, string[]>();
  const twice: string[] = [];
  for (const line of markdown.split('\n')) {
    const name = /^\|\s*`([A-Za-z0-9_]+)`\s*\|/.exec(line)?.[1];
    if (name === undefined) continue;
    if (rows.has(name)) twice.push(name);
    rows.set(name, cells(line));
  }
  return { rows, twice };
}

/** What to change in the file so that its table matches CONFIG_VARIABLES; empty when it does. */
function configDocsProblems(markdown: string, variables: readonly ConfigVariable[]): string[] {
  const { rows, twice } = documented(markdown);
  const problems = twice.map((name) => `${FILE} has more than one row for ${name}: keep one`);
  variables.forEach((v, i) => {
    const have = rows.get(v.name);
    if (have === undefined) {
      const where = i === 0 ? 'as the first row' : `after the row for ${variables[i - 1]?.name}`;
      problems.push(`add this row to ${FILE} ${where}: ${rowOf(v)}`);
      return;
    }
    if (have[1] !== v.default) {
      problems.push(`in ${FILE}, the default of ${v.name} must read ${v.default} (src/config.ts), not ${have[1]}`);
    }
    if (have[2] !== v.description) {
      problems.push(
        `in ${FILE}, the row for ${v.name} must read as its .describe() in src/config.ts (change both to change it): ${rowOf(v)}`,
      );
    }
  });
  for (const name of rows.keys()) {
    if (!variables.some((v) => v.name === name)) {
      problems.push(`remove the row for ${name} from ${FILE}: src/config.ts reads no such variable`);
    }
  }
  return problems;
}

describe('docs/configuration.md', () => {
  it('has a description for every variable in src/config.ts', () => {
    const bare = CONFIG_VARIABLES.filter((v) => v.description === '').map((v) => v.name);
    expect(bare, 'give each a .describe(…) in src/config.ts: the Meaning of its row').toEqual([]);
  });

  it('lists every variable of src/config.ts, and no other, with its default and description', () => {
    const markdown = readFileSync(path.join(ROOT, FILE), 'utf8');
    expect(configDocsProblems(markdown, CONFIG_VARIABLES)).toEqual([]);
  });

  it('names the row to add, the cell to correct and the row to remove', () => {
    const a = { name: 'A_SECONDS', default: '`5`', description: 'How long.' };
    const b = { name: 'B_URL', default: 'unset', description: 'Where.' };
    const table = (...rows: string[]) =>
      ['| Variable | Default | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
    expect(configDocsProblems(table(rowOf(a), rowOf(b)), [a, b])).toEqual([]);
    expect(configDocsProblems(table(rowOf(a)), [a, b])).toEqual([
      `add this row to ${FILE} after the row for A_SECONDS: | \`B_URL\` | unset | Where. |`,
    ]);
    expect(configDocsProblems(table('| `A_SECONDS` | `6` | How long. |', rowOf(b)), [a, b])).toEqual([
      `in ${FILE}, the default of A_SECONDS must read \`5\` (src/config.ts), not \`6\``,
    ]);
    expect(configDocsProblems(table(rowOf(a), rowOf(b), '| `C_GONE` | `1` | Old. |'), [a, b])).toEqual([
      `remove the row for C_GONE from ${FILE}: src/config.ts reads no such variable`,
    ]);
  });
});
