/**
 * Every relative link in README.md, docs/*.md and bench/RESULTS.md reaches a file that exists, and a
 * link to a heading (`#…`) reaches a heading of that file, as GitHub names its anchors.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from '../scripts/openapi.ts';

const PAGES = [
  'README.md',
  'bench/RESULTS.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** Markdown without its fenced code blocks and inline code, where brackets are not links. */
const prose = (markdown: string) => markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .trim()
    .replace(/\s/g, '-');

function anchors(file: string): Set<string> {
  const markdown = readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  return new Set([...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => anchor(m[1] as string)));
}

it('links only to files and headings that exist', () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    for (const m of prose(readFileSync(path.join(ROOT, page), 'utf8')).matchAll(/\]\(([^)\s]+)\)/g)) {
      const link = m[1] as string;
      if (/^[a-z]+:/i.test(link)) continue;
      const [target = '', hash] = link.split('#');
      const file = target === '' ? page : path.posix.normalize(path.posix.join(path.posix.dirname(page), target));
      if (!existsSync(path.join(ROOT, file))) broken.push(`${page}: ${link} (no file ${file})`);
      else if (hash !== undefined && file.endsWith('.md') && !anchors(file).has(hash)) {
        broken.push(`${page}: ${link} (no heading #${hash} in ${file})`);
      }
    }
  }
  expect(broken).toEqual([]);
});
