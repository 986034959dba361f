/** Runs `node bin/longhaul.js …` as a real child process and follows its output. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'longhaul.js');

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
 * runner's environment, such as its DATABASE_URL.
 */
export function runLonghaul(args: string[], env: Record<string, string>): LonghaulProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
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
            finish(() =>
              reject(new Error(`longhaul ${args.join(' ')} exited first.\nstdout:\n${out}\nstderr:\n${err}`)),
            );
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
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = runLonghaul(args, env);
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
