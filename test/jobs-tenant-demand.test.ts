/**
 * The tenants' demand the fair share is computed from (src/jobs/lifecycle.ts tenantDemand): per tenant
 * with active jobs, its leased RUNNING jobs, and its waiting ones (PENDING, counted up to the cap, and
 * RUNNING with no lease, handed over); tenants with no active job are not in it.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tenantDemand } from '../src/jobs/lifecycle.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob, leasedTo } from './support/jobs.ts';

let db: TestDatabase;
let pool: pg.Pool;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

it('counts each tenant’s running and waiting jobs, its PENDING ones up to the cap', async () => {
  const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map((n) => createTenant(pool, `demand-${n}`)));
  if (a === undefined || b === undefined || c === undefined || d === undefined) throw new Error('no tenants');
  for (let i = 0; i < 12; i++) await insertJob(pool, a.id);
  for (let i = 0; i < 2; i++) await insertJob(pool, a.id, leasedTo(randomUUID()));
  await insertJob(pool, a.id, { status: 'RUNNING', started_at: new Date() });
  await insertJob(pool, b.id);
  await insertJob(pool, c.id, leasedTo(randomUUID()));
  await insertJob(pool, d.id, { status: 'COMPLETED', started_at: new Date(), finished_at: new Date() });

  const capped = await tenantDemand(pool, 5);
  expect(Object.fromEntries(capped)).toEqual({
    [a.id]: { running: 2, waiting: 6 },
    [b.id]: { running: 0, waiting: 1 },
    [c.id]: { running: 1, waiting: 0 },
  });
  expect((await tenantDemand(pool, 100)).get(a.id)).toEqual({ running: 2, waiting: 13 });
});
