/** Helpers for benchmarks: a longhaul process of its own, and timed concurrent loops. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`longhaul ${role} exited with ${code}`))));
  const deadline = Date.now() + 60_000;
  const ready = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
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

/** Runs `clients` loops of `op` for `seconds`, returning the count and each op's latency in ms. */
export async function timedLoops(clients: number, seconds: number, op: (client: number) => Promise<void>): Promise<{ count: number; perSecond: number; latencies: number[] }> {
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
