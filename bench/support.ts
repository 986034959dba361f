/** Helpers for benchmarks: a longhaul process of its own, and timed concurrent loops. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Queryable } from '../src/db/pool.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface ChildService {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts `longhaul <role>` (a role that serves HTTP) as a child process and waits until it is ready. */
export async function startChildService(role: 'api' | 'start', env: Record<string, string>): Promise<ChildService> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'longhaul.js'), role], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LONGHAUL_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`longhaul ${role} exited with ${code}`))),
  );
  const deadline = Date.now() + 60_000;
  const ready = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const ok = await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`longhaul ${role} was not ready in 60 s`);
  };
  try {
    await Promise.race([exited, ready()]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/**
 * The value of one series (`name` or `name{label="value"}`) in a running service's Prometheus text at
 * `/metrics`; undefined when the service has not reported it (a labelled counter never incremented).
 */
export async function metricValue(url: string, series: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Runs `clients` loops of `op` for `seconds`, returning the count and each op's latency in ms. */
export async function timedLoops(
  clients: number,
  seconds: number,
  op: (client: number) => Promise<void>,
): Promise<{ count: number; perSecond: number; latencies: number[] }> {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await op(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { count: latencies.length, perSecond: latencies.length / elapsed, latencies };
}

/** USER_HZ: Linux reports process CPU times in ticks of 1/100 s on every mainstream architecture. */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) a local process has used so far, from /proc; undefined where there is none. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks.
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** The CPU seconds each process of the Postgres server (backends, WAL writer, …) has used; undefined unless they are local. */
export async function postgresCpu(db: Queryable): Promise<Map<number, number> | undefined> {
  const { rows } = await db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity');
  const cpu = new Map<number, number>();
  for (const { pid } of rows) {
    const s = processCpuSeconds(pid);
    if (s === undefined) return undefined;
    cpu.set(pid, s);
  }
  return cpu;
}

/** CPU seconds the server's processes used between two readings (a process started in between counts from zero). */
export function cpuBetween(
  before: Map<number, number> | undefined,
  after: Map<number, number> | undefined,
): number | undefined {
  if (before === undefined || after === undefined) return undefined;
  let total = 0;
  for (const [pid, s] of after) total += s - (before.get(pid) ?? 0);
  return total;
}
