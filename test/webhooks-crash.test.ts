/**
 * A dispatcher killed with kill -9 in the middle of its deliveries loses nothing: a real
 * `longhaul worker` process claims and starts sending, is SIGKILLed while every request is in flight,
 * and another dispatcher delivers all of them after the claim lease, with the same webhook-ids and
 * without counting the killed attempts.
 */
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { PgListener } from '../src/db/listener.ts';
import { createPool, type Pool } from '../src/db/pool.ts';
import { transition } from '../src/jobs/repository.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { runLonghaul } from './support/process.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';

const DELIVERIES = 10;
const ENV = {
  LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
  LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '5',
  // The shortest lease the timeout allows: the killed process's claims are free again after it.
  LONGHAUL_WEBHOOK_LEASE_SECONDS: '6',
  LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: String(DELIVERIES),
  LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2',
};

let db: TestDatabase;
let pool: Pool;
let tenant: CreatedTenant;
let rx: Receiver;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, 4);
  tenant = await createTenant(pool, 'crash');
  rx = await startReceiver();
});

afterAll(async () => {
  await rx.close();
  await pool.end();
  await db.drop();
});

it('loses no delivery when the dispatcher is killed with kill -9 mid-delivery', async () => {
  // The first request of each delivery never gets an answer: all are in flight when the process dies.
  rx.on('/hook', (_n, req) =>
    rx.received.filter((r) => r.headers['webhook-id'] === req.headers['webhook-id']).length === 1
      ? new Promise<void>(() => undefined)
      : undefined,
  );
  const ids: string[] = [];
  for (let i = 0; i < DELIVERIES; i++) {
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO jobs (id, tenant_id, type, input, callback_url, max_attempts) VALUES (gen_random_uuid(), $1, 'synthetic', '{}', $2, 1) RETURNING id`,
      [tenant.id, `${rx.url}/hook`],
    );
    const id = rows[0]?.id ?? '';
    await transition(pool, id, 'CANCELLED');
    ids.push(id);
  }

  const worker = runLonghaul(['worker'], { DATABASE_URL: db.url, LONGHAUL_LOG_LEVEL: 'warn', ...ENV });
  try {
    await waitFor('every delivery in flight', () => rx.received.length === DELIVERIES, 30_000);
    worker.kill('SIGKILL');
    expect(await worker.exited).toBe(-1);
  } finally {
    worker.kill('SIGKILL');
  }
  const { rows: held } = await pool.query<{ status: string; attempts: number; claimed: boolean }>(
    'SELECT status, attempts, claim_token IS NOT NULL AS claimed FROM webhook_deliveries WHERE job_id = ANY($1::uuid[])',
    [ids],
  );
  expect(held).toHaveLength(DELIVERIES);
  expect(held.every((d) => d.status === 'PENDING' && d.attempts === 0 && d.claimed)).toBe(true);

  const config = loadConfig({ DATABASE_URL: db.url, ...ENV });
  const listener = new PgListener({ databaseUrl: db.url, log: createLogger('silent') });
  await listener.start();
  const dispatcher = new Dispatcher({
    pool,
    listener,
    settings: config.webhooks,
    allow: new CallbackAllowList(config.callbackAllow),
    log: createLogger('silent'),
    registry: createMetrics().registry,
    drainSeconds: 1,
  });
  await dispatcher.start();
  try {
    await waitFor(
      'all delivered by the second dispatcher',
      async () => {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = 'SUCCEEDED' AND attempts = 1`,
        );
        return rows[0]?.n === DELIVERIES;
      },
      30_000,
    );
  } finally {
    await dispatcher.stop();
    await listener.stop();
  }
  const byId = new Map<string, number>();
  for (const r of rx.received) {
    new Webhook(tenant.webhook_secret).verify(r.body, r.headers as Record<string, string>);
    const id = String(r.headers['webhook-id']);
    byId.set(id, (byId.get(id) ?? 0) + 1);
  }
  // Each event reached the receiver twice with the same webhook-id (at least once: the receiver dedupes).
  expect(byId.size).toBe(DELIVERIES);
  expect([...byId.values()].every((n) => n === 2)).toBe(true);
});
