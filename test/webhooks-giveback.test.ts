/**
 * A dispatcher claims deliveries ahead of its free slots. One that waits in that buffer past half its
 * lease's spare time is given back unstarted (due now, no attempt spent) rather than started late in its
 * lease, then claimed afresh and delivered once. Real receiver on 127.0.0.1; real dispatcher; no mocks.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { transition } from './support/status.ts';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { startTestService, type TestService } from './support/service.ts';

/** Lease 3 s, attempt timeout 2 s: a buffered delivery must start within (3 − 2) / 2 = 0.5 s of its claim. */
const LEASE_S = 3;
const TIMEOUT_S = 2;
/** The receiver answers the first request this late: the two deliveries buffered behind it pass 0.5 s. */
const FIRST_ANSWER_MS = 900;

let t: TestService;
let rx: Receiver;
let dispatcher: Dispatcher | undefined;

beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: String(TIMEOUT_S),
      LONGHAUL_WEBHOOK_LEASE_SECONDS: String(LEASE_S),
      // One slot, so the other deliveries of the claim wait in the buffer.
      LONGHAUL_WEBHOOK_CONCURRENCY: '1',
      LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '1',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2',
    },
  });
  rx = await startReceiver();
});

afterAll(async () => {
  await dispatcher?.stop();
  await rx.close();
  await t.stop();
});

async function givenBack(): Promise<number> {
  const metrics = await t.service.metrics.registry.getSingleMetricAsString('longhaul_webhook_given_back_total');
  return Number(/^longhaul_webhook_given_back_total (\d+)/m.exec(metrics)?.[1] ?? 0);
}

it('gives back deliveries that waited too long for a slot, unspent, and delivers each of them once', async () => {
  rx.on('/slow', (n) => (n === 1 ? new Promise((resolve) => setTimeout(resolve, FIRST_ANSWER_MS)) : undefined));
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await t.api('/v1/jobs', {
      method: 'POST',
      json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: `${rx.url}/slow` },
    });
    const { id } = (await res.json()) as { id: string };
    await transition(t.service.pool, id, 'RUNNING', { extraSql: ', started_at = now(), attempts = 1' });
    await transition(t.service.pool, id, 'COMPLETED', { result: { i } });
    ids.push(id);
  }
  // All three deliveries exist before the dispatcher starts, so its first claim takes them together.
  dispatcher = await startDispatcher(t, 2);

  const rows = await waitFor('all three delivered', async () => {
    const { rows } = await t.service.pool.query<{
      job_id: string;
      status: string;
      attempts: number;
      webhook_id: string;
    }>(`SELECT job_id, status, attempts, webhook_id FROM webhook_deliveries WHERE job_id = ANY($1::uuid[])`, [ids]);
    return rows.length === 3 && rows.every((r) => r.status === 'SUCCEEDED') ? rows : undefined;
  });
  // Each delivered by exactly one attempt: giving back spent none, and nothing was sent twice.
  expect(rows.map((r) => r.attempts)).toEqual([1, 1, 1]);
  expect(
    rx
      .to('/slow')
      .map((r) => r.headers['webhook-id'])
      .sort(),
  ).toEqual(rows.map((r) => r.webhook_id).sort());
  expect(await givenBack()).toBeGreaterThanOrEqual(1);
});
