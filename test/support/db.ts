/** Each test file works in its own database, cloned from the migrated template in milliseconds. */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { cloneDatabase } from './scratch.ts';
import { TEMPLATE_DB } from './db-url.ts';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  return { name, ...(await cloneDatabase(inject('serverUrl'), TEMPLATE_DB, name)) };
}
