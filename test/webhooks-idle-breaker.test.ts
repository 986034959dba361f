/**
 * An idle dispatcher sleeps until the earliest delivery it could claim: a delivery of an endpoint whose
 * breaker is holding it (open, cool-down running) counts from the end of the cool-down, however overdue,
 * so that dispatchers do not claim in vain at the idle floor for the whole cool-down of a failing endpoint.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTenant } from '../src/tenants/repository.ts';
import { secondsUntilNextDue } from '../src/webhooks/store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob } from './support/jobs.ts';

let db: TestDatabase;
let pool: pg.Pool;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  tenantId = (await createTenant(pool, 'idle-breaker')).id;
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

async function pendingDelivery(origin: string, dueInSeconds: number): Promise<void> {
  const jobId = await insertJob(pool, tenantId, { status: 'COMPLETED', max_attempts: 1 });
  await pool.query(
    `INSERT INTO webhook_deliveries (tenant_id, job_id, event_type, url, endpoint, payload, next_attempt_at)
     VALUES ($1, $2, 'job.completed', $3, webhook_endpoint_key($1, $3), '{}', now() + make_interval(secs => $4))`,
    [tenantId, jobId, `${origin}/hook`, dueInSeconds],
  );
}

it('counts a held endpoint’s overdue deliveries from the end of its cool-down, and others from when they are due', async () => {
  expect(await secondsUntilNextDue(pool)).toBeUndefined();
  await pendingDelivery('http://held.test:80', -60);
  await pool.query(
    `INSERT INTO webhook_endpoints (endpoint, state, retry_at, opened_at)
     VALUES (webhook_endpoint_key($1, 'http://held.test/hook'), 'open', now() + interval '30 seconds', now())`,
    [tenantId],
  );
  const held = await secondsUntilNextDue(pool);
  expect(held).toBeGreaterThan(25);
  expect(held).toBeLessThanOrEqual(30);

  await pendingDelivery('http://fine.test:80', 5);
  const fine = await secondsUntilNextDue(pool);
  expect(fine).toBeGreaterThan(0);
  expect(fine).toBeLessThanOrEqual(5);

  // Once the cool-down is over, the overdue delivery is claimable (for the probe) at once.
  await pool.query(
    `UPDATE webhook_endpoints SET retry_at = now() - interval '1 second' WHERE url = 'http://held.test:80/hook'`,
  );
  expect(await secondsUntilNextDue(pool)).toBeLessThan(0);

  // A disabled endpoint's deliveries (it answered 410) are not due at all until it is enabled.
  await pool.query(`UPDATE webhook_endpoints SET disabled_at = now() WHERE url = 'http://held.test:80/hook'`);
  const disabled = await secondsUntilNextDue(pool);
  expect(disabled).toBeGreaterThan(0);
  expect(disabled).toBeLessThanOrEqual(5);
});
