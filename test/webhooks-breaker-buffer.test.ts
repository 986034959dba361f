/**
 * Two dispatchers, each with deliveries buffered for one endpoint: once either opens the endpoint's
 * breaker, neither starts another of them (the one whose openBreaker() finds it already open gives its
 * buffer back too), so no attempt is spent against an open breaker.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { cancelledJob } from './support/webhooks.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
let rx: Receiver;
const dispatchers: Dispatcher[] = [];

beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.05,0.05,0.05,0.05,0.05,0.05,0.05',
      LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: '0',
      LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '2',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.1',
      LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '1',
      LONGHAUL_BREAKER_WINDOW: '3',
      LONGHAUL_BREAKER_MIN_REQUESTS: '3',
      LONGHAUL_BREAKER_FAILURE_RATIO: '0.5',
      LONGHAUL_BREAKER_COOLDOWN_SECONDS: '60',
    },
  });
  rx = await startReceiver();
});

afterAll(async () => {
  for (const d of dispatchers) await d.stop();
  await rx.close();
  await t.stop();
});

it('sends nothing more to an endpoint once its breaker is open (other than in-flight attempts)', async () => {
  rx.on('/hook', (_n, _r, res) =>
    new Promise<void>((r) => setTimeout(r, 50)).then(() => void res.writeHead(503).end('down')),
  );
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push(await cancelledJob(t, rx.url + '/hook'));
  // Two dispatchers (as in two worker processes), each claiming ahead for the endpoint.
  dispatchers.push(await startDispatcher(t, 1), await startDispatcher(t, 1));
  const url = `${rx.url}/hook`;
  const opened = await waitFor('breaker open', async () => {
    const { rows } = await t.service.pool.query<{ opened_at: Date }>(
      `SELECT opened_at FROM webhook_endpoints WHERE url = $1 AND state = 'open'`,
      [url],
    );
    return rows[0]?.opened_at;
  });
  await new Promise((r) => setTimeout(r, 2_000));
  // Attempts begun well after the breaker opened (the in-flight ones at that moment started before it).
  const { rows } = await t.service.pool.query<{ n: number; total: number }>(
    `SELECT count(*) FILTER (WHERE a.started_at > $2::timestamptz + interval '150 ms')::int AS n, count(*)::int AS total
       FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.job_id = ANY($1::uuid[])`,
    [ids, opened],
  );
  expect(rows[0]?.n).toBe(0);
}, 30_000);
