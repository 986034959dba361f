/**
 * Recording never waits for alerts: a dead delivery's alert goes to a slow sink (e.g.
 * LONGHAUL_ALERT_WEBHOOK_URL, up to 10 s), and meanwhile other finished attempts are recorded before
 * their leases run out, so none of them is sent again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { signedWebhookAlertSink } from '../src/webhooks/alert-sink.ts';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { completedJob } from './support/webhooks.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
let rx: Receiver;
let dispatcher: Dispatcher;

beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.05,0.05',
      LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '0.5',
      LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS: '0.5',
      LONGHAUL_WEBHOOK_LEASE_SECONDS: '2',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2',
      LONGHAUL_BREAKER_MIN_REQUESTS: '1000',
    },
  });
  rx = await startReceiver();
  // The operator's alert receiver is slow (answers after 9 s, inside the sink's 10 s timeout).
  rx.on('/alerts', (_n, _req, res) =>
    new Promise<void>((r) => setTimeout(r, 9_000)).then(() => void res.writeHead(200).end()),
  );
  t.service.alerts.addSink(signedWebhookAlertSink(`${rx.url}/alerts`, t.tenant.webhook_secret));
  dispatcher = await startDispatcher(t, 1);
});

afterAll(async () => {
  await dispatcher.stop();
  await rx.close();
  await t.stop();
});

it('sends a delivery answered 200 once, even while a dead-delivery alert is being sent', async () => {
  // A 500 on every attempt spends the short schedule, and the delivery goes dead (a 410 would only hold it).
  rx.on('/failing', (_n, _req, res) => void res.writeHead(500).end());
  await completedJob(t, rx.url + '/failing');
  await rx.arrival('the alert webhook was called', () => rx.to('/alerts').length >= 1, 10_000);
  const ok = await completedJob(t, rx.url + '/ok');
  await rx.arrival('the delivery arrived', () => rx.to('/ok').length >= 1, 5_000);
  // Longer than the 2 s lease, shorter than the slow alert.
  await new Promise((r) => setTimeout(r, 5_000));
  const { rows } = await t.service.pool.query<{ status: string; attempts: number }>(
    'SELECT status, attempts FROM webhook_deliveries WHERE job_id = $1',
    [ok],
  );
  expect({ received: rx.to('/ok').length, row: rows[0], alerts: rx.to('/alerts').length }).toEqual({
    received: 1,
    row: { status: 'SUCCEEDED', attempts: 1 },
    alerts: 1,
  });
}, 40_000);
