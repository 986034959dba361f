/**
 * A receiver's answer holding a NUL byte (e.g. a binary 200 body): Postgres text cannot hold U+0000, so
 * the stored response has it replaced by U+FFFD; the attempt is recorded, and so is every later one.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
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
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2',
      LONGHAUL_BREAKER_MIN_REQUESTS: '1000',
    },
  });
  rx = await startReceiver();
  dispatcher = await startDispatcher(t, 2);
});

afterAll(async () => {
  await dispatcher.stop();
  await rx.close();
  await t.stop();
});


it('records a successful attempt whose response body contains a NUL byte', async () => {
  rx.on('/nul', (_n, _req, res) => void res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from([0x6f, 0x6b, 0x00, 0x01])));
  const jobId = await completedJob(t, rx.url + '/nul');
  await waitFor('the receiver got the delivery', () => rx.to('/nul').length >= 1, 5_000);
  // The receiver answered 200: the delivery must become SUCCEEDED with one attempt.
  const status = await waitFor(
    'delivery recorded',
    async () => {
      const { rows } = await t.service.pool.query<{ status: string; attempts: number }>('SELECT status, attempts FROM webhook_deliveries WHERE job_id = $1', [jobId]);
      return rows[0]?.status === 'SUCCEEDED' ? rows[0] : undefined;
    },
    5_000,
  ).catch((err: unknown) => err as Error);
  // A later, unrelated delivery is recorded too (the dispatcher is not wedged).
  const other = await completedJob(t, rx.url + '/plain');
  const plain = await waitFor(
    'plain delivery recorded',
    async () => {
      const { rows } = await t.service.pool.query<{ status: string }>('SELECT status FROM webhook_deliveries WHERE job_id = $1', [other]);
      return rows[0]?.status === 'SUCCEEDED' ? rows[0] : undefined;
    },
    3_000,
  ).catch((err: unknown) => err as Error);
  const { rows } = await t.service.pool.query<{ status: string; attempts: number }>('SELECT status, attempts FROM webhook_deliveries WHERE job_id = $1', [jobId]);
  expect({ nulDelivery: rows[0], receivedNul: rx.to('/nul').length, plainRecorded: !(plain instanceof Error) }).toEqual({
    nulDelivery: { status: 'SUCCEEDED', attempts: 1 },
    receivedNul: 1,
    plainRecorded: true,
  });
  expect(status).not.toBeInstanceOf(Error);
  const { rows: attempts } = await t.service.pool.query<{ response: string }>(
    'SELECT a.response FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.job_id = $1',
    [jobId],
  );
  expect(attempts.map((a) => a.response)).toEqual(['ok\uFFFD\u0001']);
}, 30_000);
