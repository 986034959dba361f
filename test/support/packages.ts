/**
 * The workspace packages as a partner gets them: `npm pack`ed (which builds them with tsc) and installed
 * into fresh temporary projects from the tarballs, preferring the npm cache that `npm ci` filled (npm ci
 * stores the tarballs but not the registry's version lists, which a range needs; those are fetched once). A tarball is made once per content of its package: test files running at once
 * share it, through a lock directory, and later runs reuse it until the package's sources change.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKS = path.join(os.tmpdir(), 'longhaul-packs');
/** A lock older than this was left by a killed run. */
const STALE_LOCK_MS = 180_000;

/** The environment for npm: the test runner's own npm_* variables (set by `npm test`) would steer it. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
}

export async function npm(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { cwd, env: npmEnv(), maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm ${args.join(' ')} failed in ${cwd}: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`, {
      cause: err,
    });
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name === 'dist') continue;
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out.sort();
}

/** The path of `workspace`'s packed tarball (e.g. `clients/typescript`), packing it if its sources changed. */
export async function packed(workspace: string): Promise<string> {
  const dir = path.join(ROOT, workspace);
  const hash = createHash('sha256');
  for (const file of await filesUnder(dir)) hash.update(path.relative(dir, file)).update(await readFile(file));
  const out = path.join(PACKS, `${workspace.replace(/\//g, '-')}-${hash.digest('hex').slice(0, 16)}`);
  const lock = `${out}.lock`;
  await mkdir(PACKS, { recursive: true });
  for (;;) {
    if (existsSync(path.join(out, 'done')))
      return path.join(out, (await readFile(path.join(out, 'done'), 'utf8')).trim());
    try {
      await mkdir(lock);
    } catch {
      const age = Date.now() - (await stat(lock).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > STALE_LOCK_MS) await rm(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    try {
      await rm(out, { recursive: true, force: true });
      await mkdir(out);
      const [info] = JSON.parse(await npm(['pack', '--json', '--pack-destination', out], dir)) as Array<{
        filename: string;
      }>;
      if (info === undefined) throw new Error(`npm pack made nothing in ${dir}`);
      await writeFile(path.join(out, 'done'), info.filename);
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  }
}

/** A fresh project in a temporary directory with `files` written and `tarballs` (and their dependencies) installed (cache first). */
export async function tempProject(
  name: string,
  files: Record<string, string>,
  tarballs: string[],
): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `longhaul-${name}-`));
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', private: true, type: 'module' }, null, 2),
  );
  for (const [file, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), text);
  }
  await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', ...tarballs], dir);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Node binaries to run a partner's program on: this one (24), and the machine's older Node if it has one (20). */
export async function nodes(): Promise<Array<{ bin: string; major: number }>> {
  const found = new Map<string, number>([[process.execPath, Number(process.versions.node.split('.')[0])]]);
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const bin = path.join(dir, 'node');
    if (!existsSync(bin) || found.has(bin)) continue;
    const { stdout } = await run(bin, ['-p', 'process.versions.node + " " + process.execPath']);
    const [version = '', real = bin] = stdout.trim().split(' ');
    const major = Number(version.split('.')[0]);
    if (![...found.keys()].includes(real) && major < 24 && major >= 20) found.set(real, major);
  }
  return [...found].map(([bin, major]) => ({ bin, major }));
}
