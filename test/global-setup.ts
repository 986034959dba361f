/**
 * Starts one Postgres for the whole run (the embedded one, unless DATABASE_URL is set) and prepares a
 * template database with our migrations and pg-boss's schema, from which each test file clones its own.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { createPool } from '../src/db/pool.ts';
import { ensureQueues } from '../src/jobs/queues.ts';
import { TEMPLATE_DB, withDatabase } from './support/db-url.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let serverUrl = process.env.DATABASE_URL;
  let stop = async (): Promise<void> => undefined;
  if (serverUrl === undefined || serverUrl === '') {
    const dir = await mkdtemp(path.join(tmpdir(), 'longhaul-test-'));
    // A port unlikely to clash with a developer's `npm start` (54329).
    const port = 55000 + (process.pid % 4000);
    const server = await startEmbeddedPostgres(dir, port);
    serverUrl = server.url;
    stop = async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB}`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  await admin.end();

  const templateUrl = withDatabase(serverUrl, TEMPLATE_DB);
  const pool = createPool(templateUrl, 2);
  await migrate(pool);
  await pool.end();
  const boss = new PgBoss({ connectionString: templateUrl, supervise: false, schedule: false });
  await boss.start();
  await ensureQueues(boss, { leaseSeconds: 30, executionBudgetSeconds: 900 });
  await boss.stop({ graceful: false });

  project.provide('serverUrl', serverUrl);
  return stop;
}
