/**
 * Scratch databases for tests and benchmarks: one Postgres server (the embedded one in a temporary
 * directory unless a URL is given) and a template database holding our migrations and pg-boss's schema
 * and queues, from which each test file or benchmark clones its own database in milliseconds.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { ensureQueues } from '../../src/jobs/queues.ts';
import { startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPool } from '../../src/db/pool.ts';

/** The same server URL with another database name. */
export function databaseUrl(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

/** `serverUrl` when given, else an embedded server on `port` in a temporary directory removed by `stop`. */
export async function scratchServer(
  serverUrl: string | undefined,
  port: number,
  prefix: string,
): Promise<{ url: string; stop(): Promise<void> }> {
  if (serverUrl !== undefined && serverUrl !== '') return { url: serverUrl, stop: async () => undefined };
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const server = await startEmbeddedPostgres(dir, port);
  return {
    url: server.url,
    stop: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function adminQuery(serverUrl: string, sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

/** (Re)creates database `name` with our migrations and pg-boss's schema and queues; returns its URL. */
export async function createTemplateDatabase(serverUrl: string, name: string): Promise<string> {
  await adminQuery(serverUrl, `DROP DATABASE IF EXISTS ${name}`);
  await adminQuery(serverUrl, `CREATE DATABASE ${name}`);
  const url = databaseUrl(serverUrl, name);
  const pool = createPool(url, 2);
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
  await boss.start();
  await ensureQueues(boss, { leaseSeconds: 30, executionBudgetSeconds: 900 });
  await boss.stop({ graceful: false });
  return url;
}

/** A new database cloned from `template`, and a function that drops it. */
export async function cloneDatabase(
  serverUrl: string,
  template: string,
  name: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  await adminQuery(serverUrl, `CREATE DATABASE ${name} TEMPLATE ${template}`);
  return {
    url: databaseUrl(serverUrl, name),
    drop: () => adminQuery(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}
