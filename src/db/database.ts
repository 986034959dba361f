/** Which Postgres to use: DATABASE_URL, or the embedded server under the data dir (started once, shared by local processes). */
import pg from 'pg';
import type { Config } from '../config.ts';
import type { Logger } from '../observability/logger.ts';
import { startEmbeddedPostgres } from './embedded.ts';

export interface Database {
  url: string;
  /** True when this process started the embedded server and it had no cluster before. */
  createdCluster: boolean;
  embedded: boolean;
  /** Stops the embedded server if this process started it. */
  close(): Promise<void>;
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  if (config.databaseUrl !== undefined) {
    return { url: config.databaseUrl, createdCluster: false, embedded: false, close: async () => undefined };
  }
  const url = `postgres://longhaul:longhaul@127.0.0.1:${config.embeddedPgPort}/longhaul`;
  // Another local longhaul process (e.g. `longhaul worker` beside `longhaul api`) already runs it.
  if (await reachable(url)) return { url, createdCluster: false, embedded: true, close: async () => undefined };
  log.info({ dataDir: config.dataDir, port: config.embeddedPgPort }, 'starting embedded PostgreSQL');
  const server = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort, (line) =>
    log.debug({ postgres: line.trim() }, 'postgres'),
  );
  return { url: server.url, createdCluster: server.created, embedded: true, close: () => server.stop() };
}
