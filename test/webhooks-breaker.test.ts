/**
 * Circuit breaker per endpoint (open → one probe → closed, visible through the API and /metrics) and
 * isolation (a slow endpoint does not hold back another's webhooks), with a real receiver on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { cancelledJob } from './support/webhooks.ts';
import { startTestService, type TestService } from './support/service.ts';

const COOLDOWN_S = 1;
let t: TestService;
let dispatcher: Dispatcher;

beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      // 8 attempts within ~0.4 s: without the breaker holding them, the deliveries would be DEAD long before the cool-down ends.
      LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.05,0.05,0.05,0.05,0.05,0.05,0.05',
      LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: '0',
      LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '2',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.1',
      LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '2',
      LONGHAUL_BREAKER_WINDOW: '4',
      LONGHAUL_BREAKER_MIN_REQUESTS: '4',
      LONGHAUL_BREAKER_FAILURE_RATIO: '0.5',
      LONGHAUL_BREAKER_COOLDOWN_SECONDS: String(COOLDOWN_S),
      // The per-endpoint breaker gauge names an endpoint: shown only when the operator allows tenant labels.
      LONGHAUL_METRICS_TENANT_LABELS: 'true',
      // Each scrape reads the database: the gauge is checked right after the state it shows changes.
      LONGHAUL_METRICS_REFRESH_SECONDS: '0',
    },
  });
  dispatcher = await startDispatcher(t, 1);
});

afterAll(async () => {
  await dispatcher.stop();
  await t.stop();
});

interface Endpoint {
  id: string;
  endpoint: string;
  state: string;
  recent_failures: number;
}
async function endpointState(rx: Receiver): Promise<Endpoint | undefined> {
  const body = (await (await t.api('/v1/webhook-endpoints')).json()) as { data: Endpoint[] };
  return body.data.find((e) => e.endpoint === `${rx.url}/hook`);
}

async function statuses(ids: string[]): Promise<Array<{ status: string; attempts: number }>> {
  const { rows } = await t.service.pool.query<{ status: string; attempts: number }>(
    'SELECT status, attempts FROM webhook_deliveries WHERE job_id = ANY($1::uuid[])',
    [ids],
  );
  return rows;
}

describe('circuit breaker', () => {
  it('opens when most deliveries fail, lets one probe through after the cool-down, and closes on success', async () => {
    const rx = await startReceiver();
    try {
      let down = true;
      rx.on('/hook', (_n, _r, res) => void (down ? res.writeHead(503).end('down') : undefined));
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push(await cancelledJob(t, rx.url + '/hook'));

      await waitFor('breaker open', async () => (await endpointState(rx))?.state === 'open');
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      expect(metrics).toContain(`longhaul_webhook_endpoint_state{endpoint_id="${(await endpointState(rx))?.id}"} 2`);
      const atOpen = rx.received.length;

      // After the cool-down exactly one probe goes out; it fails, so the breaker opens again.
      await waitFor('the probe', () => rx.received.length > atOpen, COOLDOWN_S * 1000 + 5000);
      await waitFor('breaker open again', async () => (await endpointState(rx))?.state === 'open');
      expect(rx.received.length).toBe(atOpen + 1);
      // Held deliveries did not spend their attempts: none is DEAD although 8 attempts take ~0.4 s.
      expect((await statuses(ids)).every((d) => d.status === 'PENDING' && d.attempts < 8)).toBe(true);

      down = false;
      await waitFor(
        'breaker closed',
        async () => (await endpointState(rx))?.state === 'closed',
        COOLDOWN_S * 1000 + 5000,
      );
      await waitFor('all delivered', async () => (await statuses(ids)).every((d) => d.status === 'SUCCEEDED'));
      const metricsAfter = await (await fetch(`${t.url}/metrics`)).text();
      expect(metricsAfter).toContain(
        `longhaul_webhook_endpoint_state{endpoint_id="${(await endpointState(rx))?.id}"} 0`,
      );
    } finally {
      await rx.close();
    }
  });
});

describe('a tenant without a signing secret', () => {
  it('fails its own deliveries without opening the breaker of an endpoint other tenants share', async () => {
    const rx = await startReceiver();
    try {
      const unsigned = await t.newTenant();
      await t.service.pool.query('DELETE FROM webhook_secrets WHERE tenant_id = $1', [unsigned.id]);
      await t.service.pool.query('DELETE FROM webhook_signing_keys WHERE tenant_id = $1', [unsigned.id]);
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push(await cancelledJob(t, rx.url + '/hook', unsigned.api_key));
      // Each has failed twice, more than the breaker's window needs to open, without a request going out.
      await waitFor('unsigned attempts', async () => (await statuses(ids)).every((d) => d.attempts >= 2));
      expect(rx.received.length).toBe(0);
      expect((await endpointState(rx))?.state ?? 'closed').toBe('closed');
      // Another tenant's webhook to the same endpoint goes out.
      const signed = await cancelledJob(t, rx.url + '/hook');
      await waitFor('the other tenant delivered', async () =>
        (await statuses([signed])).every((d) => d.status === 'SUCCEEDED'),
      );
    } finally {
      await rx.close();
    }
  });
});

describe('isolation', () => {
  it('keeps delivering to a healthy endpoint while a slow one holds its own concurrency slots', async () => {
    const slow = await startReceiver();
    const fast = await startReceiver();
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    try {
      slow.on('/hook', () => gate);
      const slowIds: string[] = [];
      for (let i = 0; i < 5; i++) slowIds.push(await cancelledJob(t, slow.url + '/hook'));
      // The per-endpoint limit (2) is reached and the rest of the slow endpoint's deliveries wait.
      await waitFor('slow endpoint saturated', () => slow.received.length === 2);
      const fastId = await cancelledJob(t, fast.url + '/hook');
      await waitFor('fast delivery', async () => (await statuses([fastId]))[0]?.status === 'SUCCEEDED', 1500);
      expect(slow.received.length).toBe(2);
      expect((await statuses(slowIds)).every((d) => d.status === 'PENDING')).toBe(true);
      release();
      await waitFor('slow deliveries', async () => (await statuses(slowIds)).every((d) => d.status === 'SUCCEEDED'));
    } finally {
      release();
      await slow.close();
      await fast.close();
    }
  });
});
