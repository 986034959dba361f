/**
 * Claims pick due deliveries per endpoint: a backlog of a slow (but answering) endpoint, far longer
 * than one claim, does not hide another endpoint's deliveries, which are sent at once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { cancelledJob } from './support/webhooks.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
let slow: Receiver;
let fast: Receiver;
let dispatcher: Dispatcher | undefined;

beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '10',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.1',
      // 4 attempts in flight, at most 1 per endpoint: a claim takes at most 32 rows, 8 per endpoint.
      LONGHAUL_WEBHOOK_CONCURRENCY: '4',
      LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '1',
      LONGHAUL_BREAKER_MIN_REQUESTS: '1000',
    },
  });
  slow = await startReceiver();
  fast = await startReceiver();
});

afterAll(async () => {
  await dispatcher?.stop();
  await slow.close();
  await fast.close();
  await t.stop();
});

it('delivers to a healthy endpoint while a slow endpoint has a backlog', async () => {
  // The slow partner answers 200, but only after 3 s (within the timeout; its breaker stays closed).
  slow.on('/hook', (_n, _r, res) =>
    new Promise<void>((r) => setTimeout(r, 3_000)).then(() => void res.writeHead(200).end()),
  );
  for (let i = 0; i < 150; i++) await cancelledJob(t, slow.url + '/hook');
  dispatcher = await startDispatcher(t, 1);
  await waitFor('slow endpoint busy', () => slow.received.length >= 1);
  const fastId = await cancelledJob(t, fast.url + '/hook');
  const status = await waitFor(
    'fast delivery recorded',
    async () => {
      const { rows } = await t.service.pool.query<{ status: string }>(
        'SELECT status FROM webhook_deliveries WHERE job_id = $1',
        [fastId],
      );
      return rows[0]?.status === 'SUCCEEDED' ? rows[0].status : undefined;
    },
    4_000,
  ).catch(() => 'still PENDING after 4 s');
  expect({ received: fast.received.length, status }).toEqual({ received: 1, status: 'SUCCEEDED' });
}, 60_000);
