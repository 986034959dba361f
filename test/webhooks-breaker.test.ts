/**
 * Circuit breaker per endpoint (open → one probe → closed, visible through the API and /metrics; once it
 * is open, no dispatcher starts another delivery to the endpoint) and isolation (a slow endpoint, or its
 * backlog, does not hold back another's webhooks), with real receivers on 127.0.0.1 and real dispatchers;
 * an idle dispatcher sleeps past a held endpoint's overdue deliveries until its cool-down ends.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.ts';
import { createTenant } from '../src/tenants/repository.ts';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { secondsUntilNextDue } from '../src/webhooks/store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob } from './support/jobs.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { breakerEnv, cancelledJob, deliveryStatuses, webhookEndpoints } from './support/webhooks.ts';
import { startTestService, type TestService } from './support/service.ts';

const COOLDOWN_S = 1;
let t: TestService;

beforeAll(async () => {
  t = await startTestService({ env: { ...breakerEnv(COOLDOWN_S), LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '2' } });
});
afterAll(async () => t.stop());

const dispatchers: Dispatcher[] = [];
const receivers: Receiver[] = [];
/** A dispatcher with the file's settings and `settings` over them, for one test. */
async function dispatcher(settings: Partial<Config['webhooks']> = {}): Promise<Dispatcher> {
  const d = await startDispatcher(t, 1, settings);
  dispatchers.push(d);
  return d;
}
/** A receiver for one test. */
async function receiver(): Promise<Receiver> {
  const rx = await startReceiver();
  receivers.push(rx);
  return rx;
}
afterEach(async () => {
  for (const d of dispatchers.splice(0)) await d.stop();
  for (const rx of receivers.splice(0)) await rx.close();
});

async function endpointState(rx: Receiver) {
  return (await webhookEndpoints(t)).find((e) => e.endpoint === `${rx.url}/hook`);
}

describe('circuit breaker', () => {
  it('opens when most deliveries fail, lets one probe through after the cool-down, and closes on success', async () => {
    const rx = await receiver();
    await dispatcher();
    let down = true;
    rx.on('/hook', (_n, _r, res) => void (down ? res.writeHead(503).end('down') : undefined));
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await cancelledJob(t, rx.url + '/hook'));

    await waitFor('breaker open', async () => (await endpointState(rx))?.state === 'open');
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toContain(`longhaul_webhook_endpoint_state{endpoint_id="${(await endpointState(rx))?.id}"} 2`);
    const atOpen = rx.received.length;

    // After the cool-down exactly one probe goes out; it fails, so the breaker opens again.
    await rx.arrival('the probe', () => rx.received.length > atOpen, COOLDOWN_S * 1000 + 5000);
    await waitFor('breaker open again', async () => (await endpointState(rx))?.state === 'open');
    expect(rx.received.length).toBe(atOpen + 1);
    // Held deliveries did not spend their attempts: none is DEAD although 8 attempts take ~0.4 s.
    expect((await deliveryStatuses(t, ids)).every((d) => d.status === 'PENDING' && d.attempts < 8)).toBe(true);

    down = false;
    await waitFor(
      'breaker closed',
      async () => (await endpointState(rx))?.state === 'closed',
      COOLDOWN_S * 1000 + 5000,
    );
    await waitFor('all delivered', async () => (await deliveryStatuses(t, ids)).every((d) => d.status === 'SUCCEEDED'));
    const metricsAfter = await (await fetch(`${t.url}/metrics`)).text();
    expect(metricsAfter).toContain(`longhaul_webhook_endpoint_state{endpoint_id="${(await endpointState(rx))?.id}"} 0`);
  });

  it('sends nothing more to an endpoint once its breaker is open (other than in-flight attempts)', async () => {
    const rx = await receiver();
    rx.on('/hook', (_n, _r, res) =>
      new Promise<void>((r) => setTimeout(r, 50)).then(() => void res.writeHead(503).end('down')),
    );
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await cancelledJob(t, rx.url + '/hook'));
    // Two dispatchers (as in two worker processes), each claiming ahead for the endpoint: the one whose
    // openBreaker() finds the breaker already open must give its buffer back too.
    const settings = {
      endpointConcurrency: 1,
      breaker: { window: 3, minRequests: 3, failureRatio: 0.5, cooldownSeconds: 60 },
    };
    await dispatcher(settings);
    await dispatcher(settings);
    const url = `${rx.url}/hook`;
    const opened = await waitFor('breaker open', async () => {
      const { rows } = await t.service.pool.query<{ opened_at: Date }>(
        `SELECT opened_at FROM webhook_endpoints WHERE url = $1 AND state = 'open'`,
        [url],
      );
      return rows[0]?.opened_at;
    });
    // Once open, each dispatcher gives back what it had claimed for the endpoint and records what was in
    // flight; one that went on sending its buffer would send (and record) those first.
    await waitFor('every claim given back or recorded', async () => {
      const { rows: held } = await t.service.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM webhook_deliveries WHERE job_id = ANY($1::uuid[]) AND claim_token IS NOT NULL',
        [ids],
      );
      return held[0]?.n === 0;
    });
    // Attempts begun well after the breaker opened (the in-flight ones at that moment started before it).
    const { rows } = await t.service.pool.query<{ n: number; total: number }>(
      `SELECT count(*) FILTER (WHERE a.started_at > $2::timestamptz + interval '150 ms')::int AS n, count(*)::int AS total
         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.job_id = ANY($1::uuid[])`,
      [ids, opened],
    );
    expect(rows[0]?.n).toBe(0);
  }, 30_000);
});

// An idle dispatcher sleeps until the earliest delivery it could claim: a delivery of an endpoint whose
// breaker is holding it (open, cool-down running) counts from the end of the cool-down, however overdue,
// so that dispatchers do not claim in vain at the idle floor for the whole cool-down of a failing endpoint.
describe('the idle sleep of a dispatcher', () => {
  // secondsUntilNextDue() reads every tenant's deliveries: a database of its own, without the other tests' rows.
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
});

describe('a tenant without a signing secret', () => {
  it('fails its own deliveries without opening the breaker of an endpoint other tenants share', async () => {
    const rx = await receiver();
    await dispatcher();
    const unsigned = await t.newTenant();
    await t.service.pool.query('DELETE FROM webhook_secrets WHERE tenant_id = $1', [unsigned.id]);
    await t.service.pool.query('DELETE FROM webhook_signing_keys WHERE tenant_id = $1', [unsigned.id]);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await cancelledJob(t, rx.url + '/hook', unsigned.api_key));
    // Each has failed twice, more than the breaker's window needs to open, without a request going out.
    await waitFor('unsigned attempts', async () => (await deliveryStatuses(t, ids)).every((d) => d.attempts >= 2));
    expect(rx.received.length).toBe(0);
    expect((await endpointState(rx))?.state ?? 'closed').toBe('closed');
    // Another tenant's webhook to the same endpoint goes out.
    const signed = await cancelledJob(t, rx.url + '/hook');
    await waitFor('the other tenant delivered', async () =>
      (await deliveryStatuses(t, [signed])).every((d) => d.status === 'SUCCEEDED'),
    );
  });
});

describe('isolation', () => {
  it('keeps delivering to a healthy endpoint while a slow one holds its own concurrency slots', async () => {
    const slow = await receiver();
    const fast = await receiver();
    await dispatcher();
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    try {
      slow.on('/hook', () => gate);
      const slowIds: string[] = [];
      for (let i = 0; i < 5; i++) slowIds.push(await cancelledJob(t, slow.url + '/hook'));
      // The per-endpoint limit (2) is reached and the rest of the slow endpoint's deliveries wait.
      await slow.arrival('slow endpoint saturated', () => slow.received.length === 2);
      const fastId = await cancelledJob(t, fast.url + '/hook');
      await waitFor(
        'fast delivery',
        async () => (await deliveryStatuses(t, [fastId]))[0]?.status === 'SUCCEEDED',
        1500,
      );
      expect(slow.received.length).toBe(2);
      expect((await deliveryStatuses(t, slowIds)).every((d) => d.status === 'PENDING')).toBe(true);
      release();
      await waitFor('slow deliveries', async () =>
        (await deliveryStatuses(t, slowIds)).every((d) => d.status === 'SUCCEEDED'),
      );
    } finally {
      release();
    }
  });

  it('delivers to a healthy endpoint while a slow endpoint has a backlog longer than a claim', async () => {
    const slow = await receiver();
    const fast = await receiver();
    // The slow partner answers 200, but only after 3 s (within the timeout; its breaker stays closed).
    slow.on('/hook', (_n, _r, res) =>
      new Promise<void>((r) => setTimeout(r, 3_000)).then(() => void res.writeHead(200).end()),
    );
    for (let i = 0; i < 150; i++) await cancelledJob(t, slow.url + '/hook');
    // 4 attempts in flight, at most 1 per endpoint: a claim takes at most 32 rows, 8 per endpoint.
    await dispatcher({
      timeoutSeconds: 10,
      concurrency: 4,
      endpointConcurrency: 1,
      breaker: { ...t.config.webhooks.breaker, minRequests: 1000 },
    });
    await slow.arrival('slow endpoint busy', () => slow.received.length >= 1);
    const fastId = await cancelledJob(t, fast.url + '/hook');
    const status = await waitFor(
      'fast delivery recorded',
      async () => {
        const rows = await deliveryStatuses(t, [fastId]);
        return rows[0]?.status === 'SUCCEEDED' ? rows[0].status : undefined;
      },
      4_000,
    ).catch(() => 'still PENDING after 4 s');
    expect({ received: fast.received.length, status }).toEqual({ received: 1, status: 'SUCCEEDED' });
  }, 60_000);
});
