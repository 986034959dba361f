/** Helpers for worker tests: real `longhaul worker` processes, and waiting on a condition. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startTestService, type TestService } from './service.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURE_TYPES = path.join(ROOT, 'test', 'fixtures', 'job-types.ts');

/** Polls `fn` until it returns a value other than undefined/false, or fails after `ms`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  ms = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether gate `name` of a job is open: a row in the fixtures' `gates` table (false while it does not exist). */
export async function gateOpen(db: pg.Pool, jobId: string, name: string): Promise<boolean> {
  const found = await db
    .query('SELECT 1 FROM gates WHERE job_id = $1 AND name = $2', [jobId, name])
    .catch(() => ({ rowCount: 0 }));
  return (found.rowCount ?? 0) > 0;
}

/** Opens gate `name` of a job, which a fixture's step waits for. */
export async function openGate(db: pg.Pool, jobId: string, name: string): Promise<void> {
  await db.query('INSERT INTO gates (job_id, name) VALUES ($1, $2)', [jobId, name]);
}

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  /** Everything it logged so far (JSON lines). */
  output(): string;
  /** Sends SIGKILL (if still running) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<number | null>;
}

/** Starts `node bin/longhaul.js worker` against `databaseUrl` and waits for 'longhaul worker started'. */
export async function spawnWorker(databaseUrl: string, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'longhaul.js'), 'worker'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      LONGHAUL_LOG_LEVEL: 'info',
      LONGHAUL_JOB_TYPES: FIXTURE_TYPES,
      LONGHAUL_LEASE_SECONDS: '2',
      LONGHAUL_MONITOR_INTERVAL_SECONDS: '0.5',
      LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '10',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let onStarted = (): void => undefined;
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  const read = (d: Buffer) => {
    out += d.toString();
    if (out.includes('longhaul worker started')) onStarted();
  };
  child.stdout?.on('data', read);
  child.stderr?.on('data', read);
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      started,
      exited.then((code) => {
        throw new Error(`worker exited with ${code} before starting:\n${out}`);
      }),
      new Promise(
        (_, reject) => (timer = setTimeout(() => reject(new Error('timed out waiting for worker start')), 30_000)),
      ),
    ]);
  } catch (err) {
    // A worker that did not start in time is no test's to kill: it must not outlive the run.
    child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    child,
    pid: child.pid ?? -1,
    output: () => out,
    exited,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

/**
 * For a test file whose tests run real worker processes: registers the file's hooks for an API-only
 * service with the fixture job types (handed to `started`) and returns `start(env)`, which spawns a
 * worker on the service's database that is SIGKILLed after the test.
 */
export function useWorkerProcesses(
  started: (t: TestService) => void,
): (env?: Record<string, string>) => Promise<WorkerProcess> {
  let t: TestService | undefined;
  const workers: WorkerProcess[] = [];
  beforeAll(async () => {
    t = await startTestService({ roles: ['api'], env: { LONGHAUL_JOB_TYPES: FIXTURE_TYPES } });
    started(t);
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.kill('SIGKILL')));
  });
  afterAll(async () => t?.stop());
  return async (env = {}) => {
    if (t === undefined) throw new Error('useWorkerProcesses: the service has not started');
    const w = await spawnWorker(t.db.url, env);
    workers.push(w);
    return w;
  };
}
