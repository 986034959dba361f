/**
 * A dispatcher killed with kill -9 in the middle of its deliveries loses nothing: a real
 * `longhaul worker` process claims and starts sending, is SIGKILLed while every request is in flight,
 * and another dispatcher delivers all of them after the claim lease, with the same webhook-ids and
 * without counting the killed attempts. A claim that outlived its lease (its result could not be
 * recorded, say during an outage) does not keep the live claim's result from being recorded.
 */
import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { PgListener } from '../src/db/listener.ts';
import { createPool, type Pool } from '../src/db/pool.ts';
import { transition } from './support/status.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { claimDeliveries, recordAttempts, type AttemptRecord } from '../src/webhooks/store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob } from './support/jobs.ts';
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
    const id = await insertJob(pool, tenant.id, { callback_url: `${rx.url}/hook`, max_attempts: 1 });
    await transition(pool, id, 'CANCELLED');
    ids.push(id);
  }

  const worker = runLonghaul(['worker'], { DATABASE_URL: db.url, LONGHAUL_LOG_LEVEL: 'warn', ...ENV });
  try {
    await rx.arrival('every delivery in flight', () => rx.received.length === DELIVERIES, 30_000);
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

it('records the live claim once when a batch also holds the result of its expired claim', async () => {
  await transition(
    pool,
    await insertJob(pool, tenant.id, { callback_url: `${rx.url}/stale`, max_attempts: 1 }),
    'CANCELLED',
  );
  const stale = randomUUID();
  const [claimed] = await claimDeliveries(pool, {
    token: stale,
    limit: 1,
    perEndpoint: 1,
    busy: new Map(),
    leaseSeconds: 30,
  });
  if (claimed === undefined) throw new Error('nothing claimed');
  // Its lease ran out unrecorded and another claim sent it again.
  const live = randomUUID();
  await pool.query('UPDATE webhook_deliveries SET claim_token = $2 WHERE id = $1', [claimed.id, live]);
  const result = (token: string): AttemptRecord => ({
    id: claimed.id,
    token,
    endpoint: claimed.endpoint,
    status: 'SUCCEEDED',
    delaySeconds: 0,
    startedAt: new Date(),
    durationMs: 5,
    statusCode: 200,
    error: null,
    response: 'ok',
    countsForEndpoint: true,
    ok: true,
    gone: false,
  });
  expect(await recordAttempts(pool, [result(stale), result(live)], new Map())).toEqual(new Set([claimed.id]));
  const { rows: attempts } = await pool.query('SELECT n FROM webhook_attempts WHERE delivery_id = $1', [claimed.id]);
  expect(attempts).toEqual([{ n: 1 }]);
  const { rows: delivery } = await pool.query(
    'SELECT status, attempts, claim_token FROM webhook_deliveries WHERE id = $1',
    [claimed.id],
  );
  expect(delivery).toEqual([{ status: 'SUCCEEDED', attempts: 1, claim_token: null }]);
});
