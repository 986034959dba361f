/**
 * Webhook endpoints are per tenant, with a real receiver on 127.0.0.1 and the independent
 * `standardwebhooks` verifier: the circuit breaker is keyed by tenant and URL, so one tenant's failing
 * path on a shared host holds none of another tenant's deliveries, and each tenant sees only its own
 * counters; a 410 disables that tenant's endpoint, whose deliveries wait (unspent, not dead) until it
 * is enabled through the API, and are then delivered.
 */
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { startReceiver, waitFor, type Receiver, type Received } from './support/receiver.ts';
import { startTestService, type TestService } from './support/service.ts';
import {
  breakerEnv,
  cancelledJob,
  deliveryStatuses,
  webhookEndpoints,
  type WebhookEndpoint,
} from './support/webhooks.ts';

let t: TestService;
let dispatcher: Dispatcher;
let rx: Receiver;
/** Tenant A is the test service's tenant; B a second one calling the same host. */
let b: CreatedTenant;

beforeAll(async () => {
  t = await startTestService({
    // A cool-down longer than the test: an open breaker stays open throughout.
    env: breakerEnv(600),
  });
  b = await createTenant(t.service.pool, `tenant-b-${Math.random().toString(36).slice(2)}`);
  rx = await startReceiver();
  dispatcher = await startDispatcher(t, 1);
});

afterAll(async () => {
  await dispatcher.stop();
  await rx.close();
  await t.stop();
});

/** Which tenant signed a request: the one whose secret verifies it (standardwebhooks), else undefined. */
function signer(r: Received): 'a' | 'b' | undefined {
  for (const [who, secret] of [
    ['a', t.tenant.webhook_secret],
    ['b', b.webhook_secret],
  ] as const) {
    try {
      new Webhook(secret).verify(r.body, {
        'webhook-id': String(r.headers['webhook-id']),
        'webhook-timestamp': String(r.headers['webhook-timestamp']),
        'webhook-signature': String(r.headers['webhook-signature']),
      });
      return who;
    } catch {
      // not this tenant's
    }
  }
  return undefined;
}

const endpoints = (key?: string) => webhookEndpoints(t, key);
const urlOf = (path: string) => `${rx.url}${path}`;
const deliveries = (ids: string[]) => deliveryStatuses(t, ids);

describe('per-tenant webhook endpoints', () => {
  it("opens one tenant's breaker for its failing path without holding another tenant's deliveries to the same host", async () => {
    rx.on('/a', (_n, _r, res) => void res.writeHead(503).end('down'));
    for (let i = 0; i < 6; i++) await cancelledJob(t, urlOf('/a'));
    await waitFor(
      'A’s breaker open',
      async () => (await endpoints()).find((e) => e.endpoint === urlOf('/a'))?.state === 'open',
    );
    // B's deliveries to the same host (another path) go out at once while A's breaker is open.
    const bJobs: string[] = [];
    for (let i = 0; i < 3; i++) bJobs.push(await cancelledJob(t, urlOf('/b'), b.api_key));
    await waitFor('B’s deliveries', async () => (await deliveries(bJobs)).every((d) => d.status === 'SUCCEEDED'));
    expect(rx.to('/b').map(signer)).toEqual(['b', 'b', 'b']);
    // Each tenant sees its own endpoints and counters, and no other's.
    const seenByB = await endpoints(b.api_key);
    expect(seenByB.map((e) => [e.endpoint, e.state, e.failures])).toEqual([[urlOf('/b'), 'closed', 0]]);
    const seenByA = await endpoints();
    expect(seenByA.map((e) => e.endpoint)).toEqual([urlOf('/a')]);
    expect(seenByA[0]?.successes).toBe(0);
  });

  it("keeps two tenants' breakers on the same URL apart", async () => {
    // The same URL fails for A and works for B: A's breaker opens, B's stays closed and delivers.
    rx.on('/same', (_n, r, res) => void (signer(r) === 'a' ? res.writeHead(503).end('down') : undefined));
    for (let i = 0; i < 6; i++) await cancelledJob(t, urlOf('/same'));
    await waitFor(
      'A’s breaker open',
      async () => (await endpoints()).find((e) => e.endpoint === urlOf('/same'))?.state === 'open',
    );
    const before = rx.to('/same').filter((r) => signer(r) === 'b').length;
    for (let i = 0; i < 3; i++) await cancelledJob(t, urlOf('/same'), b.api_key);
    await rx.arrival('B’s deliveries', () => rx.to('/same').filter((r) => signer(r) === 'b').length >= before + 3);
    const mine = (await endpoints(b.api_key)).find((e) => e.endpoint === urlOf('/same'));
    expect(mine?.state).toBe('closed');
    expect(mine?.failures).toBe(0);
  });

  it('disables a tenant’s endpoint on 410, holds its deliveries, and delivers them once it is enabled', async () => {
    let gone = true;
    // 410 to tenant A only: B calling the same URL is not disabled.
    rx.on('/gone', (_n, r, res) => void (gone && signer(r) === 'a' ? res.writeHead(410).end('gone') : undefined));
    const first = await cancelledJob(t, urlOf('/gone'));
    const disabled = await waitFor('A’s endpoint disabled', async () => {
      const e = (await endpoints()).find((x) => x.endpoint === urlOf('/gone'));
      return e?.disabled_at !== null && e !== undefined ? e : undefined;
    });
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toContain(`longhaul_webhook_endpoint_state{endpoint_id="${disabled.id}"} 3`);
    // While disabled: a new delivery waits, unattempted; B's delivery to the same URL and A's to another go out.
    const second = await cancelledJob(t, urlOf('/gone'));
    const bJob = await cancelledJob(t, urlOf('/gone'), b.api_key);
    const other = await cancelledJob(t, urlOf('/other'));
    await waitFor('B’s delivery and A’s other one', async () =>
      (await deliveries([bJob, other])).every((d) => d.status === 'SUCCEEDED'),
    );
    expect(rx.to('/gone').filter((r) => signer(r) === 'a')).toHaveLength(1);
    // Held, not dead: the 410'd one keeps its one attempt, the later one has none.
    expect(await deliveries([first, second])).toEqual([
      { status: 'PENDING', attempts: 1 },
      { status: 'PENDING', attempts: 0 },
    ]);
    // Another tenant cannot enable it (it is not theirs), nor can an unknown id be enabled.
    expect(
      (await t.api(`/v1/webhook-endpoints/${disabled.id}/enable`, { method: 'POST', key: b.api_key })).status,
    ).toBe(404);
    expect((await t.api('/v1/webhook-endpoints/not-an-id/enable', { method: 'POST' })).status).toBe(404);

    gone = false;
    const res = await t.api(`/v1/webhook-endpoints/${disabled.id}/enable`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as WebhookEndpoint).disabled_at).toBeNull();
    await waitFor('the held deliveries', async () =>
      (await deliveries([first, second])).every((d) => d.status === 'SUCCEEDED'),
    );
    expect(rx.to('/gone').filter((r) => signer(r) === 'a')).toHaveLength(3);
  });
});
