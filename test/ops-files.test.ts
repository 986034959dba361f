/**
 * The files operators read and run, checked statically (no Docker engine or network needed): the
 * README starts with the two commands, the errors table in docs/ stays in step with the code, the image and compose files keep their essentials, and
 * the lock file keeps `npm ci` working.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ERROR_CODES } from '../src/api/errors.ts';
import { ROOT } from '../scripts/openapi.ts';

const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

/** Rows of the markdown tables in `markdown`: first cell (without backticks) → all cells. */
function table(markdown: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|') || /^\|\s*-/.test(line)) continue;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    rows.set((cells[0] ?? '').replace(/`/g, ''), cells);
  }
  return rows;
}

describe('README', () => {
  it('starts with the two commands: start and test', () => {
    const block = /^# longhaul\n\n```sh\n(.*)\n(.*)\n```/.exec(read('README.md'));
    expect(block?.[1]).toMatch(/^npm ci && npm start\s/);
    expect(block?.[2]).toMatch(/^npm test\s/);
  });
});

describe('docs', () => {
  it('lists every error code with its status in docs/errors.md', () => {
    const rows = table(read('docs/errors.md'));
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      expect(rows.get(code)?.[1], `docs/errors.md row for ${code}`).toBe(String(status));
    }
  });
});

describe('Docker', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => /^[A-Z]+\s/.test(l));

  it('builds in stages from Node 24 slim, runs as a non-root user, checks /healthz and starts longhaul', () => {
    const froms = instructions.filter((l) => l.startsWith('FROM '));
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f).toMatch(/^FROM node:24[\w.-]*-slim\b/);
    expect(instructions.some((l) => /^RUN npm ci --omit=dev\b/.test(l))).toBe(true);
    const user = instructions.filter((l) => l.startsWith('USER ')).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER (root|0)\b/);
    expect(instructions.find((l) => l.startsWith('HEALTHCHECK '))).toContain('/healthz');
    expect(instructions).toContain('EXPOSE 3000');
    expect(dockerfile).toMatch(/HOST=0\.0\.0\.0/);
    expect(instructions.at(-1)).toBe('CMD ["node", "bin/longhaul.js", "start"]');
  });

  it('copies only what exists, and .dockerignore keeps what the image needs', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const line of instructions.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
      const sources = line.split(/\s+/).slice(1, -1);
      for (const s of sources) {
        expect(existsSync(path.join(ROOT, s)), `${s} exists`).toBe(true);
        expect(ignored, `${s} is not in .dockerignore`).not.toContain(s);
      }
    }
  });

  it('composes PostgreSQL 17 with the API and workers sharing it', () => {
    // Compose files use YAML merge keys (`<<: *longhaul`).
    const compose = parse(read('docker-compose.yml'), { merge: true }) as {
      services: Record<string, Record<string, unknown>>;
      volumes: Record<string, unknown>;
    };
    const { postgres, api, worker } = compose.services;
    expect(postgres?.image).toBe('postgres:17');
    expect(postgres?.healthcheck).toBeDefined();
    expect(postgres?.volumes).toEqual([expect.stringMatching(/^pgdata:/)]);
    expect(Object.keys(compose.volumes)).toContain('pgdata');
    expect(api?.command).toEqual(['node', 'bin/longhaul.js', 'api']);
    expect(worker?.command).toEqual(['node', 'bin/longhaul.js', 'worker']);
    for (const s of [api, worker]) {
      expect((s?.environment as Record<string, string>).DATABASE_URL).toMatch(/@postgres:5432\//);
      expect(s?.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    }
    expect((api?.environment as Record<string, string>).LONGHAUL_ADMIN_TOKEN).toBe('${LONGHAUL_ADMIN_TOKEN:-}');
  });
});

it('package-lock.json locks every optional dependency it names, or `npm ci` refuses to install', () => {
  const lock = JSON.parse(read('package-lock.json')) as {
    packages: Record<string, { optionalDependencies?: Record<string, string> }>;
  };
  const missing: string[] = [];
  for (const [where, pkg] of Object.entries(lock.packages)) {
    for (const name of Object.keys(pkg.optionalDependencies ?? {})) {
      // Node resolution: the package's own node_modules, then each parent's, then the top.
      const parts = where.split('/node_modules/');
      const candidates = parts.map((_, i) => [...parts.slice(0, parts.length - i), name].join('/node_modules/'));
      candidates.push(`node_modules/${name}`);
      if (!candidates.some((c) => lock.packages[c] !== undefined)) missing.push(`${where} → ${name}`);
    }
  }
  expect(missing).toEqual([]);
});
