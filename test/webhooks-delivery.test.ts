/**
 * Webhook delivery end to end: jobs reach a terminal state through the API or `transition()`, the
 * outbox row commits with them, a dispatcher sends to a real receiver on 127.0.0.1, and every delivery
 * is verified with the independent `standardwebhooks` package. Schedules and timeouts are compressed.
 */
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../src/db/pool.ts';
import { transition } from './support/status.ts';
import { signedWebhookAlertSink } from '../src/webhooks/alert-sink.ts';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import type { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { WebhookSender } from '../src/webhooks/send.ts';
import { startReceiver, waitFor, type Behaviour, type Receiver } from './support/receiver.ts';
import { startDispatcher } from './support/dispatcher.ts';
import { completedJob } from './support/webhooks.ts';
import { startTestService, type TestService } from './support/service.ts';

/**
 * 8 attempts 50 ms apart but the last, which gives Retry-After room (it lengthens a wait up to the longest
 * delay): a delivery that fails throughout is dead in about 3 s.
 */
const SCHEDULE = '0.05,0.05,0.05,0.05,0.05,0.05,2.5';
const LONGEST_DELAY_S = 2.5;
const THROTTLE_FLOOR_S = 1;
const TIMEOUT_S = 0.5;

const ENV = {
  LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
  LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: SCHEDULE,
  LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: String(THROTTLE_FLOOR_S),
  LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: String(TIMEOUT_S),
  LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS: '0.5',
  LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2',
  // The breaker has its own test file; here it must not hold the always-failing endpoints back.
  LONGHAUL_BREAKER_MIN_REQUESTS: '1000',
};

let t: TestService;
let rx: Receiver;
let dispatcher: Dispatcher;

beforeAll(async () => {
  t = await startTestService({ env: ENV });
  rx = await startReceiver();
  dispatcher = await startDispatcher(t, 2);
});

afterAll(async () => {
  await dispatcher.stop();
  await rx.close();
  await t.stop();
});

interface JobBody {
  id: string;
  status: string;
}
interface Delivery {
  id: string;
  webhook_id: string;
  status: string;
  attempt_count: number;
  event_type: string;
  attempts: Array<{
    n: number;
    status_code: number | null;
    error: string | null;
    response: string | null;
    duration_ms: number;
    started_at: string;
  }>;
}

let seq = 0;
/** A job with a callback to `path` on the receiver, moved to `to` (cancel through the API, others through transition()). */
async function finishJob(
  path: string,
  to: 'COMPLETED' | 'FAILED' | 'CANCELLED' = 'COMPLETED',
  key?: string,
): Promise<JobBody> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    key,
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: rx.url + path, metadata: { n: ++seq } },
  });
  expect(res.status).toBe(202);
  const job = (await res.json()) as JobBody;
  if (to === 'CANCELLED') {
    expect((await t.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST', key })).status).toBe(200);
  } else {
    await transition(t.service.pool, job.id, 'RUNNING', { extraSql: ', started_at = now(), attempts = 1' });
    await transition(
      t.service.pool,
      job.id,
      to,
      to === 'COMPLETED'
        ? { result: { rows: 42 }, extraSql: ', processed = 1, total = 3' }
        : { error: { message: 'boom' } },
    );
  }
  return job;
}

async function deliveries(jobId: string, key?: string): Promise<Delivery[]> {
  const res = await t.api(`/v1/jobs/${jobId}/deliveries`, { key });
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: Delivery[] }).data;
}

async function settled(jobId: string, status: 'succeeded' | 'dead', key?: string): Promise<Delivery> {
  return waitFor(`delivery of ${jobId} ${status}`, async () => {
    const d = (await deliveries(jobId, key))[0];
    return d?.status === status ? d : undefined;
  });
}

function verify(
  body: string,
  headers: Record<string, string | string[] | undefined>,
  secret = t.tenant.webhook_secret,
): unknown {
  return new Webhook(secret).verify(body, {
    'webhook-id': String(headers['webhook-id']),
    'webhook-timestamp': String(headers['webhook-timestamp']),
    'webhook-signature': String(headers['webhook-signature']),
  });
}

describe('events and signatures', () => {
  it('sends job.completed once, signed, with the job exactly as GET /v1/jobs/{id} returns it', async () => {
    const job = await finishJob('/completed');
    const d = await settled(job.id, 'succeeded');
    expect(d.attempt_count).toBe(1);
    const [got] = rx.to('/completed');
    if (got === undefined) throw new Error('nothing received');
    const event = verify(got.body, got.headers) as { type: string; timestamp: string; data: unknown };
    expect(got.headers['webhook-id']).toBe(d.webhook_id);
    expect(got.headers['content-type']).toBe('application/json');
    const current = (await (await t.api(`/v1/jobs/${job.id}`)).json()) as { finished_at: string };
    expect(event.type).toBe('job.completed');
    expect(event.data).toEqual(current);
    expect(event.timestamp).toBe(current.finished_at);
  });

  it('sends job.failed and job.cancelled (a PENDING job cancelled through the API)', async () => {
    const failed = await finishJob('/failed', 'FAILED');
    const cancelled = await finishJob('/cancelled', 'CANCELLED');
    await settled(failed.id, 'succeeded');
    await settled(cancelled.id, 'succeeded');
    const f = rx.to('/failed')[0];
    const c = rx.to('/cancelled')[0];
    if (f === undefined || c === undefined) throw new Error('nothing received');
    expect((verify(f.body, f.headers) as { type: string; data: { error: unknown } }).data.error).toEqual({
      message: 'boom',
    });
    expect((verify(f.body, f.headers) as { type: string }).type).toBe('job.failed');
    expect((verify(c.body, c.headers) as { type: string; data: { status: string } }).data.status).toBe('CANCELLED');
  });

  it('writes the event with the terminal state or not at all (outbox)', async () => {
    const res = await t.api('/v1/jobs', {
      method: 'POST',
      json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: rx.url + '/rolled-back' },
    });
    const job = (await res.json()) as JobBody;
    await withTransaction(t.service.pool, async (client) => {
      await transition(client, job.id, 'CANCELLED');
      const { rows } = await client.query('SELECT 1 FROM webhook_deliveries WHERE job_id = $1', [job.id]);
      expect(rows).toHaveLength(1);
      throw new Error('roll back');
    }).catch(() => undefined);
    const { rows } = await t.service.pool.query('SELECT 1 FROM webhook_deliveries WHERE job_id = $1', [job.id]);
    expect(rows).toHaveLength(0);
    expect((await t.api(`/v1/jobs/${job.id}`).then((r) => r.json())) as JobBody).toMatchObject({ status: 'PENDING' });
    // A job without a callback URL has no delivery.
    const plain = (await (
      await t.api('/v1/jobs', { method: 'POST', json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } } })
    ).json()) as JobBody;
    await t.api(`/v1/jobs/${plain.id}/cancel`, { method: 'POST' });
    expect(await deliveries(plain.id)).toEqual([]);
  });
});

describe('retries, dead letters and replay', () => {
  it('retries after a failure with the same webhook-id, then succeeds', async () => {
    rx.on('/flaky', (n, _r, res) => void (n === 1 ? res.writeHead(500).end('try later') : undefined));
    const job = await finishJob('/flaky');
    const d = await settled(job.id, 'succeeded');
    expect(d.attempts.map((a) => a.status_code)).toEqual([500, 200]);
    expect(d.attempts[0]?.response).toBe('try later');
    const ids = rx.to('/flaky').map((r) => r.headers['webhook-id']);
    expect(ids).toEqual([d.webhook_id, d.webhook_id]);
    for (const r of rx.to('/flaky')) verify(r.body, r.headers);
  });

  it('parks an always-failing delivery as DEAD after the whole schedule, alerts, and replays it with the same webhook-id', async () => {
    let healthy = false;
    rx.on('/down', (_n, _r, res) => void (healthy ? undefined : res.writeHead(500).end('down')));
    const job = await finishJob('/down');
    const dead = await settled(job.id, 'dead');
    expect(dead.attempt_count).toBe(8);
    expect(dead.attempts.map((a) => a.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(dead.attempts.every((a) => a.status_code === 500 && a.error === 'HTTP 500')).toBe(true);
    expect(new Set(rx.to('/down').map((r) => r.headers['webhook-id']))).toEqual(new Set([dead.webhook_id]));

    const alerts = await t.service.alerts.active('delivery-dead');
    expect(alerts.map((a) => a.key)).toContain(`delivery-dead:${dead.id}`);

    const list = (await (await t.api('/v1/deliveries?status=dead')).json()) as { data: Delivery[] };
    expect(list.data.map((x) => x.id)).toContain(dead.id);

    healthy = true;
    const replay = await t.api(`/v1/deliveries/${dead.id}/redeliver`, { method: 'POST' });
    expect(replay.status).toBe(202);
    const ok = await settled(job.id, 'succeeded');
    expect(ok.attempt_count).toBe(9);
    const last = rx.to('/down').at(-1);
    expect(last?.headers['webhook-id']).toBe(dead.webhook_id);
    if (last !== undefined) verify(last.body, last.headers);
    await waitFor(
      'alert cleared',
      async () => !(await t.service.alerts.active('delivery-dead')).some((a) => a.key === `delivery-dead:${dead.id}`),
    );
    // A delivery that is not finished cannot be replayed; an unknown one is 404.
    expect(
      (await t.api(`/v1/deliveries/00000000-0000-4000-8000-000000000000/redeliver`, { method: 'POST' })).status,
    ).toBe(404);
  });

  it('replays every dead delivery of a time range', async () => {
    const tenant = await t.newTenant();
    let healthy = false;
    rx.on('/range', (_n, _r, res) => void (healthy ? undefined : res.writeHead(503).end()));
    const since = new Date(Date.now() - 1000).toISOString();
    const a = await finishJob('/range', 'COMPLETED', tenant.api_key);
    const b = await finishJob('/range', 'CANCELLED', tenant.api_key);
    await settled(a.id, 'dead', tenant.api_key);
    await settled(b.id, 'dead', tenant.api_key);
    const listed = (await (
      await t.api(
        `/v1/deliveries?status=dead&since=${encodeURIComponent(since)}&until=${encodeURIComponent(new Date(Date.now() + 1000).toISOString())}`,
        { key: tenant.api_key },
      )
    ).json()) as { data: Delivery[] };
    expect(listed.data).toHaveLength(2);
    // Another tenant sees none of them.
    expect(
      (
        (await (await t.api('/v1/deliveries?status=dead&since=' + encodeURIComponent(since))).json()) as {
          data: Delivery[];
        }
      ).data.map((d) => d.id),
    ).not.toContain(listed.data[0]?.id);
    healthy = true;
    const res = await t.api('/v1/deliveries/redeliver', { method: 'POST', key: tenant.api_key, json: { since } });
    expect(res.status).toBe(202);
    expect(((await res.json()) as { redelivered: number }).redelivered).toBe(2);
    await settled(a.id, 'succeeded', tenant.api_key);
    await settled(b.id, 'succeeded', tenant.api_key);
    expect(
      (
        await t.api('/v1/deliveries/redeliver', {
          method: 'POST',
          key: tenant.api_key,
          json: { since: '2030-01-01T00:00:00Z', until: '2029-01-01T00:00:00Z' },
        })
      ).status,
    ).toBe(422);
  });
});

describe('HTTP behaviour', () => {
  it('waits between attempts as each answer asks, measured by the receiver', async () => {
    // The throttle floor is longer than the schedule's delays, Retry-After longer than the floor: each wait
    // shows which rule made it. `gap`: from the first request's arrival to the second's, in ms.
    const answer =
      (code: number): Behaviour =>
      (_n, _r, res) =>
        void res.writeHead(code).end();
    const cases: Array<{ path: string; first: Behaviour; gap: number; status: number | null }> = [
      // A timeout: the attempt runs its whole timeout, then waits at least the floor.
      {
        path: '/wait-timeout',
        first: () => new Promise<void>(() => undefined),
        gap: (TIMEOUT_S + THROTTLE_FLOOR_S) * 1000,
        status: null,
      },
      // Standard Webhooks' "slow down" answers get the floor.
      ...[429, 502, 504].map((code) => ({
        path: `/wait-${code}`,
        first: answer(code),
        gap: THROTTLE_FLOOR_S * 1000,
        status: code,
      })),
      // Retry-After in seconds lengthens the wait past the floor.
      {
        path: '/wait-retry-after-seconds',
        first: (_n, _r, res) => void res.writeHead(429, { 'retry-after': '2' }).end(),
        gap: 2000,
        status: 429,
      },
      // Retry-After as an HTTP date (whole seconds: 2 to 3 s ahead), on an answer without the floor.
      {
        path: '/wait-retry-after-date',
        first: (_n, _r, res) =>
          void res.writeHead(503, { 'retry-after': new Date(Date.now() + 3000).toUTCString() }).end(),
        gap: 2000,
        status: 503,
      },
      // A partner cannot park a delivery: Retry-After is cut to the schedule's longest delay.
      {
        path: '/wait-retry-after-long',
        first: (_n, _r, res) => void res.writeHead(429, { 'retry-after': '3600' }).end(),
        gap: LONGEST_DELAY_S * 1000,
        status: 429,
      },
    ];
    for (const c of cases) rx.on(c.path, (n, r, res) => (n === 1 ? c.first(n, r, res) : undefined));
    const jobs = await Promise.all(cases.map((c) => finishJob(c.path)));
    const settledAll = await Promise.all(jobs.map((j) => settled(j.id, 'succeeded')));
    cases.forEach((c, i) => {
      const d = settledAll[i];
      expect(
        d?.attempts.map((a) => a.status_code),
        c.path,
      ).toEqual([c.status, 200]);
      if (c.status === null) expect(d?.attempts[0]?.error, c.path).toMatch(/timeout/i);
      const [first, second] = rx.to(c.path);
      if (first === undefined || second === undefined) throw new Error(`${c.path}: expected two requests`);
      // Each wait starts after the answer (or the timeout), which comes after the request's arrival here.
      expect(second.at - first.at, c.path).toBeGreaterThanOrEqual(c.gap - 50);
    });
  });

  it('classes a timeout, 429, 502 and 504 as throttled (the floor applies), other failures as plain ones', async () => {
    const sender = new WebhookSender({
      allow: new CallbackAllowList(['127.0.0.1']),
      timeoutSeconds: 0.3,
      connectTimeoutSeconds: 0.5,
      connectionsPerEndpoint: 2,
    });
    try {
      for (const [code, kind] of [
        [429, 'throttled'],
        [502, 'throttled'],
        [504, 'throttled'],
        [500, 'failed'],
        [503, 'failed'],
        [400, 'failed'],
        [301, 'failed'],
      ] as const) {
        rx.on(`/kind-${code}`, (_n, _r, res) => void res.writeHead(code).end());
        expect((await sender.send(`${rx.url}/kind-${code}`, {}, '{}')).kind, String(code)).toBe(kind);
      }
      rx.on('/kind-hang', () => new Promise<void>(() => undefined));
      expect((await sender.send(`${rx.url}/kind-hang`, {}, '{}')).kind).toBe('throttled');
    } finally {
      await sender.destroy();
    }
  });

  it('waits for a slow response within the timeout', async () => {
    rx.on('/slow', () => new Promise<void>((r) => setTimeout(r, 200)));
    const job = await finishJob('/slow');
    const d = await settled(job.id, 'succeeded');
    expect(d.attempt_count).toBe(1);
    expect(d.attempts[0]?.duration_ms).toBeGreaterThanOrEqual(190);
  });

  it('reads a huge response only up to a cap and stores 4 KiB of it', async () => {
    rx.on('/huge', (_n, _r, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = 'x'.repeat(64 * 1024);
      // 16 MiB, written as the socket drains; the dispatcher stops reading long before the end.
      let left = 256;
      const write = () => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', write);
        }
        res.end();
      };
      res.on('error', () => undefined);
      write();
    });
    const job = await finishJob('/huge');
    const d = await settled(job.id, 'succeeded');
    expect(d.attempts[0]?.response).toHaveLength(4096);
  });

  it('stores an answer holding a NUL byte with U+FFFD in its place, and goes on recording', async () => {
    // Postgres text cannot hold U+0000: unreplaced, the attempt could never be recorded, nor any after it.
    rx.on(
      '/nul',
      (_n, _r, res) =>
        void res
          .writeHead(200, { 'content-type': 'application/octet-stream' })
          .end(Buffer.from([0x6f, 0x6b, 0x00, 0x01])),
    );
    const job = await finishJob('/nul');
    const d = await settled(job.id, 'succeeded');
    expect(d.attempts.map((a) => a.response)).toEqual(['ok\uFFFD\u0001']);
    expect(rx.to('/nul')).toHaveLength(1);
    const later = await finishJob('/after-nul');
    expect((await settled(later.id, 'succeeded')).attempts).toHaveLength(1);
  });

  it('does not follow redirects and counts them as failures', async () => {
    rx.on(
      '/moved',
      (n, _r, res) => void (n === 1 ? res.writeHead(302, { location: `${rx.url}/elsewhere` }).end() : undefined),
    );
    const job = await finishJob('/moved');
    const d = await settled(job.id, 'succeeded');
    expect(d.attempts.map((a) => a.status_code)).toEqual([302, 200]);
    expect(d.attempts[0]?.error).toMatch(/redirect/);
    expect(rx.to('/elsewhere')).toHaveLength(0);
  });

  it("holds the delivery at 410 Gone and disables the tenant's endpoint", async () => {
    const gone = await startReceiver();
    try {
      gone.on('/gone', (_n, _r, res) => void res.writeHead(410).end('unsubscribed'));
      const res = await t.api('/v1/jobs', {
        method: 'POST',
        json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: gone.url + '/gone' },
      });
      const job = (await res.json()) as JobBody;
      await t.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      const endpoint = await waitFor('the endpoint disabled', async () => {
        const endpoints = (await (await t.api('/v1/webhook-endpoints')).json()) as {
          data: Array<{ endpoint: string; disabled_at: string | null }>;
        };
        const e = endpoints.data.find((x) => x.endpoint === `${gone.url}/gone`);
        return e?.disabled_at === null ? undefined : e;
      });
      expect(endpoint.disabled_at).not.toBeNull();
      // Held, not dead: it waits for the endpoint to be enabled (test/webhooks-tenant-endpoints.test.ts).
      const d = (await deliveries(job.id))[0];
      expect(d?.status).toBe('pending');
      expect(d?.attempt_count).toBe(1);
      expect(d?.attempts[0]?.status_code).toBe(410);
    } finally {
      await gone.close();
    }
  });
});

describe('signing keys', () => {
  it('signs with both secrets during a rotation grace period, each verifying on its own', async () => {
    const tenant = await t.newTenant();
    const res = await t.api('/v1/webhook-secrets', { method: 'POST', key: tenant.api_key });
    expect(res.status).toBe(201);
    const fresh = (await res.json()) as { secret: string };
    expect(fresh.secret).toMatch(/^whsec_/);
    const job = await finishJob('/rotated', 'CANCELLED', tenant.api_key);
    await settled(job.id, 'succeeded', tenant.api_key);
    const got = rx.to('/rotated')[0];
    if (got === undefined) throw new Error('nothing received');
    expect(String(got.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verify(got.body, got.headers, tenant.webhook_secret)).toBeTruthy();
    expect(verify(got.body, got.headers, fresh.secret)).toBeTruthy();
    expect(() => verify(got.body, got.headers, 'whsec_' + Buffer.alloc(32, 7).toString('base64'))).toThrow();
    const settings = (await (await t.api('/v1/webhook-settings', { key: tenant.api_key })).json()) as {
      secrets: Array<{ expires_at: string | null }>;
    };
    expect(settings.secrets).toHaveLength(2);
    expect(settings.secrets.filter((s) => s.expires_at !== null)).toHaveLength(1);
    // grace_seconds=0 revokes the previous secrets at once.
    const now = (await (
      await t.api('/v1/webhook-secrets?grace_seconds=0', { method: 'POST', key: tenant.api_key })
    ).json()) as { secret: string };
    const after = (await (await t.api('/v1/webhook-settings', { key: tenant.api_key })).json()) as {
      secrets: unknown[];
    };
    expect(after.secrets).toHaveLength(1);
    const job2 = await finishJob('/rotated-2', 'CANCELLED', tenant.api_key);
    await settled(job2.id, 'succeeded', tenant.api_key);
    const got2 = rx.to('/rotated-2')[0];
    if (got2 === undefined) throw new Error('nothing received');
    expect(verify(got2.body, got2.headers, now.secret)).toBeTruthy();
    expect(() => verify(got2.body, got2.headers, fresh.secret)).toThrow();
  });

  it('signs v1a with Ed25519, verifiable with the key published in /.well-known/jwks.json', async () => {
    const { createPublicKey, verify: edVerify } = await import('node:crypto');
    const tenant = await t.newTenant();
    const put = await t.api('/v1/webhook-settings', {
      method: 'PUT',
      key: tenant.api_key,
      json: { signature_scheme: 'v1a' },
    });
    expect(put.status).toBe(200);
    const settings = (await put.json()) as {
      signature_scheme: string;
      signing_keys: Array<{ kid: string; public_key: string }>;
    };
    expect(settings.signature_scheme).toBe('v1a');
    const kid = settings.signing_keys[0]?.kid;
    const jwks = (await (await fetch(`${t.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<{ kid: string; kty: string; crv: string; x: string }>;
    };
    const jwk = jwks.keys.find((k) => k.kid === kid);
    if (jwk === undefined) throw new Error('key not published');
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    const job = await finishJob('/v1a', 'CANCELLED', tenant.api_key);
    await settled(job.id, 'succeeded', tenant.api_key);
    const got = rx.to('/v1a')[0];
    if (got === undefined) throw new Error('nothing received');
    const [scheme, sig] = String(got.headers['webhook-signature']).split(',');
    expect(scheme).toBe('v1a');
    const content = `${String(got.headers['webhook-id'])}.${String(got.headers['webhook-timestamp'])}.${got.body}`;
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    expect(edVerify(null, Buffer.from(content), key, Buffer.from(sig ?? '', 'base64'))).toBe(true);
    expect(edVerify(null, Buffer.from(content + ' '), key, Buffer.from(sig ?? '', 'base64'))).toBe(false);
    // The v1 secret does not verify a v1a delivery.
    expect(() => verify(got.body, got.headers, tenant.webhook_secret)).toThrow();
    // Rotating the key: during the grace period both keys sign.
    expect((await t.api('/v1/webhook-signing-keys', { method: 'POST', key: tenant.api_key })).status).toBe(201);
    const job2 = await finishJob('/v1a-2', 'CANCELLED', tenant.api_key);
    await settled(job2.id, 'succeeded', tenant.api_key);
    expect(String(rx.to('/v1a-2')[0]?.headers['webhook-signature']).split(' ')).toHaveLength(2);
  });

  it('refuses bad settings with a problem', async () => {
    expect((await t.api('/v1/webhook-settings', { method: 'PUT', json: { signature_scheme: 'v2' } })).status).toBe(422);
    expect((await t.api('/v1/webhook-secrets?grace_seconds=-1', { method: 'POST' })).status).toBe(422);
    expect((await t.api('/v1/deliveries?status=nope')).status).toBe(422);
    expect((await t.api('/v1/deliveries/not-a-uuid')).status).toBe(404);
  });
});

/**
 * Leases bound how long a claimed delivery may take before another claim sends it again. Each case runs a
 * service and dispatcher of its own (on the file's receiver): its lease and slots must hold for every
 * delivery it sends, which the file's dispatcher would otherwise claim too.
 */
describe('claims and leases: each delivery sent once', () => {
  describe('a slow alert sink', () => {
    let own: TestService;
    let ownDispatcher: Dispatcher;
    /** Resolves once the slow alert receiver has answered: the stall, if any, is over. */
    let alertAnswered: Promise<void>;
    beforeAll(async () => {
      // A short schedule, and a lease shorter than the alert sink takes.
      own = await startTestService({
        env: { ...ENV, LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.05,0.05', LONGHAUL_WEBHOOK_LEASE_SECONDS: '2' },
      });
      // The operator's alert receiver is slow (answers after 9 s, inside the sink's 10 s timeout), as a
      // LONGHAUL_ALERT_WEBHOOK_URL may be.
      let answered: () => void = () => undefined;
      alertAnswered = new Promise<void>((r) => (answered = r));
      rx.on('/stall-alerts', (_n, _req, res) =>
        new Promise<void>((r) => setTimeout(r, 9_000)).then(() => {
          res.writeHead(200).end();
          answered();
        }),
      );
      own.service.alerts.addSink(signedWebhookAlertSink(`${rx.url}/stall-alerts`, own.tenant.webhook_secret));
      ownDispatcher = await startDispatcher(own, 1);
    });
    afterAll(async () => {
      await ownDispatcher.stop();
      await own.stop();
    });

    it('sends a delivery answered 200 once, even while a dead-delivery alert is being sent', async () => {
      // A 500 on every attempt spends the short schedule, and the delivery goes dead (a 410 would only hold it).
      rx.on('/stall-failing', (_n, _req, res) => void res.writeHead(500).end());
      await completedJob(own, rx.url + '/stall-failing');
      await rx.arrival('the alert webhook was called', () => rx.to('/stall-alerts').length >= 1, 10_000);
      const ok = await completedJob(own, rx.url + '/stall-ok');
      await rx.arrival('the delivery arrived', () => rx.to('/stall-ok').length >= 1, 5_000);
      // A delivery stalled behind the slow alert past its 2 s lease would be claimed and sent again before
      // the alert answers; once it has, and the delivery's outcome is recorded, any second send has come.
      await alertAnswered;
      const rows = await waitFor('the delivery recorded as sent', async () => {
        const { rows: r } = await own.service.pool.query<{ status: string; attempts: number }>(
          'SELECT status, attempts FROM webhook_deliveries WHERE job_id = $1',
          [ok],
        );
        return r[0]?.status === 'SUCCEEDED' || r[0]?.status === 'DEAD' ? r : undefined;
      });
      expect({ received: rx.to('/stall-ok').length, row: rows[0], alerts: rx.to('/stall-alerts').length }).toEqual({
        received: 1,
        row: { status: 'SUCCEEDED', attempts: 1 },
        alerts: 1,
      });
    }, 40_000);
  });

  // A dispatcher claims deliveries ahead of its free slots. One that waits in that buffer past half its
  // lease's spare time is given back unstarted (due now, no attempt spent) rather than started late in its
  // lease, then claimed afresh and delivered once.
  describe('deliveries waiting for a slot', () => {
    /** Lease 3 s, attempt timeout 2 s: a buffered delivery must start within (3 − 2) / 2 = 0.5 s of its claim. */
    const LEASE_S = 3;
    const ATTEMPT_TIMEOUT_S = 2;
    /** The receiver answers the first request this late: the two deliveries buffered behind it pass 0.5 s. */
    const FIRST_ANSWER_MS = 900;
    let own: TestService;
    let ownDispatcher: Dispatcher | undefined;
    beforeAll(async () => {
      own = await startTestService({
        env: {
          ...ENV,
          LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: String(ATTEMPT_TIMEOUT_S),
          LONGHAUL_WEBHOOK_LEASE_SECONDS: String(LEASE_S),
          // One slot, so the other deliveries of the claim wait in the buffer.
          LONGHAUL_WEBHOOK_CONCURRENCY: '1',
          LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '1',
        },
      });
    });
    afterAll(async () => {
      await ownDispatcher?.stop();
      await own.stop();
    });

    async function givenBack(): Promise<number> {
      const metrics = await own.service.metrics.registry.getSingleMetricAsString('longhaul_webhook_given_back_total');
      return Number(/^longhaul_webhook_given_back_total (\d+)/m.exec(metrics)?.[1] ?? 0);
    }

    it('gives back deliveries that waited too long for a slot, unspent, and delivers each of them once', async () => {
      rx.on('/giveback', (n) => (n === 1 ? new Promise((resolve) => setTimeout(resolve, FIRST_ANSWER_MS)) : undefined));
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(await completedJob(own, `${rx.url}/giveback`));
      // All three deliveries exist before the dispatcher starts, so its first claim takes them together.
      ownDispatcher = await startDispatcher(own, 2);

      const rows = await waitFor('all three delivered', async () => {
        const { rows } = await own.service.pool.query<{
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
          .to('/giveback')
          .map((r) => r.headers['webhook-id'])
          .sort(),
      ).toEqual(rows.map((r) => r.webhook_id).sort());
      expect(await givenBack()).toBeGreaterThanOrEqual(1);
    });
  });
});
