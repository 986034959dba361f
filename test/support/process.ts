/** Runs `node bin/longhaul.js …` (or what `npm start` runs) as a real child process and follows its output. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'longhaul.js');

export interface LonghaulProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** stdout parsed as JSON log lines (other lines skipped). */
  logs(): Array<Record<string, unknown>>;
  /** Resolves with the first log line `match` accepts; rejects when the process exits first or after `timeoutMs`. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The exit code (signals count as failure, -1). */
  exited: Promise<number>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts the `longhaul` command with exactly `env` (plus PATH and HOME): nothing leaks in from the test
 * runner's environment, such as its DATABASE_URL. `cwd` is where relative paths (the default data dir
 * `./.longhaul`) resolve; the test runner's by default.
 */
export function runLonghaul(args: string[], env: Record<string, string>, cwd?: string): LonghaulProcess {
  return follow([BIN, ...args], env, cwd);
}

/**
 * Starts what `npm start` starts (package.json's `start` script, `node <entry>` behind scripts/node24.sh,
 * which only picks the Node binary), with this Node, `env` and `cwd` as runLonghaul takes them.
 */
export function runNpmStart(env: Record<string, string>, cwd?: string): LonghaulProcess {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const entry = /^sh scripts\/node24\.sh node (\S+)$/.exec(pkg.scripts.start)?.[1];
  if (entry === undefined) throw new Error(`npm start runs something this helper does not know: ${pkg.scripts.start}`);
  return follow([path.join(ROOT, entry)], env, cwd);
}

function follow(args: string[], env: Record<string, string>, cwd: string | undefined): LonghaulProcess {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    notify();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    notify();
  });
  const exited = new Promise<number>((resolve) => child.once('close', (code) => resolve(code ?? -1)));
  let done = false;
  void exited.then(() => {
    done = true;
    notify();
  });
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    logs,
    exited,
    kill: (signal = 'SIGTERM') => void child.kill(signal),
    waitForLog: (match, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const hit = logs().find(match);
          if (hit !== undefined) finish(() => resolve(hit));
          else if (done)
            finish(() => reject(new Error(`${args.join(' ')} exited first.\nstdout:\n${out}\nstderr:\n${err}`)));
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`timed out waiting for a log line.\nstdout:\n${out}\nstderr:\n${err}`))),
          timeoutMs,
        );
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Runs a command to its end: exit code and output. */
export async function runLonghaulToEnd(
  args: string[],
  env: Record<string, string>,
  cwd?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = runLonghaul(args, env, cwd);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** A TCP port free on 127.0.0.1 at the time of asking. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
