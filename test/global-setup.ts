/**
 * Starts one Postgres for the whole run (the embedded one, unless DATABASE_URL is set) and prepares a
 * template database with our migrations and pg-boss's schema, from which each test file clones its own.
 */
import type { TestProject } from 'vitest/node';
import { createTemplateDatabase, scratchServer } from './support/scratch.ts';
import { TEMPLATE_DB } from './support/db-url.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // A port unlikely to clash with a developer's `npm start` (54329).
  const server = await scratchServer(process.env.DATABASE_URL, 55000 + (process.pid % 4000), 'longhaul-test-');
  await createTemplateDatabase(server.url, TEMPLATE_DB);
  project.provide('serverUrl', server.url);
  return () => server.stop();
}
