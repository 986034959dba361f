/**
 * The client package (clients/typescript, imported from its source) against a running service: every
 * helper a partner uses, with every response checked against openapi.yaml by the fetch it is given.
 * test/client-package.test.ts runs the packed, installed package the same way on Node 20 and 24.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Longhaul,
  LonghaulError,
  WebhookVerificationError,
  type StreamMessage,
} from '../clients/typescript/src/index.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { startTestService, type TestService } from './support/service.ts';
import { spec } from './support/spec.ts';
import { waitFor } from './support/worker.ts';

let t: TestService;
let rx: Receiver;
let checked = 0;

type Tamper = (request: Request) => Response | Error | undefined | Promise<Response | Error | undefined>;

/** fetch that fails each response not described by openapi.yaml; `tamper` may answer instead of the service. */
function conformingFetch(tamper?: Tamper) {
  return async (request: Request): Promise<Response> => {
    const replaced = await tamper?.(request);
    if (replaced instanceof Error) throw replaced;
    if (replaced !== undefined) return replaced;
    const res = await fetch(request);
    await spec().check(request.method, request.url, res);
    checked++;
    return res;
  };
}

function client(opts: { key?: string; tamper?: Tamper } = {}) {
  return new Longhaul({
    url: t.url,
    apiKey: opts.key ?? t.tenant.api_key,
    webhookSecret: t.tenant.webhook_secret,
    fetch: conformingFetch(opts.tamper),
    retry: { minDelayMs: 1, maxDelayMs: 1000 },
    pollIntervalMs: 50,
  });
}

beforeAll(async () => {
  t = await startTestService({
    roles: ['api', 'worker'],
    env: { LONGHAUL_CALLBACK_ALLOW: '127.0.0.1', LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2' },
  });
  rx = await startReceiver();
});
afterAll(async () => {
  await rx.close();
  await t.stop();
});

describe('jobs', () => {
  it('submits, waits for the result, reads and lists', async () => {
    const lh = client();
    const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 3, chunk_ms: 5 }, metadata: { order: 42 } });
    expect(job.status).toBe('PENDING');
    const done = await lh.jobs.wait(job.id, { timeout: 30_000 });
    expect(done).toMatchObject({ id: job.id, status: 'COMPLETED', result: { chunks: 3 }, metadata: { order: 42 } });
    expect((await lh.jobs.get(job.id)).status).toBe('COMPLETED');
    expect(checked).toBeGreaterThan(0);
  });

  it('lists every job across pages, newest first', async () => {
    const tenant = await t.newTenant();
    const lh = client({ key: tenant.api_key });
    const ids = [];
    for (let i = 0; i < 5; i++)
      ids.push((await lh.jobs.submit({ type: 'synthetic', input: { chunks: 0, chunk_ms: 0 } })).id);
    const seen = [];
    for await (const j of lh.jobs.list({ limit: 2 })) seen.push(j.id);
    expect(seen).toEqual(ids.reverse());
  });

  it('retries a submission after a network error and a 503 under one Idempotency-Key: one job', async () => {
    const tenant = await t.newTenant();
    const keys: string[] = [];
    let n = 0;
    const lh = client({
      key: tenant.api_key,
      tamper: async (request) => {
        if (request.method !== 'POST') return undefined;
        keys.push(request.headers.get('idempotency-key') ?? '');
        n++;
        if (n === 1) return new TypeError('fetch failed');
        if (n === 2) return new Response('{}', { status: 503, headers: { 'Retry-After': '0' } });
        if (n === 3) {
          // The job is created, but its answer is lost on the way back.
          await (await fetch(request.clone())).text();
          return new Response('', { status: 502 });
        }
        return undefined;
      },
    });
    const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 0, chunk_ms: 0 } });
    expect(n).toBe(4);
    expect(new Set(keys).size).toBe(1);
    const all = [];
    for await (const j of lh.jobs.list()) all.push(j.id);
    expect(all).toEqual([job.id]);
  });

  it('throws LonghaulError with the problem type and request id; cancels and retries', async () => {
    const lh = client();
    const err = await lh.jobs.get('0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LonghaulError);
    expect(err).toMatchObject({ status: 404, type: 'https://longhaul.dev/problems/not-found' });
    expect((err as LonghaulError).requestId).toMatch(/.+/);

    const slow = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 100, chunk_ms: 50 } });
    await lh.jobs.cancel(slow.id);
    expect((await lh.jobs.wait(slow.id, { timeout: 30_000 })).status).toBe('CANCELLED');

    const failing = await lh.jobs.submit({
      type: 'synthetic',
      input: { chunks: 2, chunk_ms: 1, fail_attempts: 1, permanent: true },
    });
    expect((await lh.jobs.wait(failing.id, { timeout: 30_000 })).status).toBe('FAILED');
    // A retry starts the attempts over, so this input fails again, permanently.
    const retried = await lh.jobs.retry(failing.id, { from: 'start' });
    expect(retried).toMatchObject({ id: failing.id, status: 'PENDING' });
    const again = await lh.jobs.wait(failing.id, { timeout: 30_000 });
    expect(again.status).toBe('FAILED');
    expect(again.error_history.length).toBeGreaterThan(1);
    const bad = await lh.jobs
      .submit({ type: 'synthetic', input: { chunks: -1, chunk_ms: 1 } })
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 422, problem: { errors: [{ field: 'input.chunks' }] } });
  });

  it('wait gives up at its timeout with a TimeoutError, leaving the job running', async () => {
    const lh = client();
    const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 50, chunk_ms: 50 } });
    const err = await lh.jobs.wait(job.id, { timeout: 200 }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('TimeoutError');
    expect(['PENDING', 'RUNNING']).toContain((await lh.jobs.get(job.id)).status);
    await lh.jobs.cancel(job.id);
  });
});

describe('watch', () => {
  it('yields a snapshot, non-decreasing progress and the terminal status, and resumes after a sequence number', async () => {
    const lh = client();
    const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 5, chunk_ms: 20 } });
    const seen: StreamMessage[] = [];
    for await (const m of lh.jobs.watch(job.id)) seen.push(m);
    expect(seen[0]?.type).toBe('snapshot');
    const last = seen.at(-1);
    expect(last).toMatchObject({ type: 'status', status: 'COMPLETED' });
    const percents = seen.flatMap((m) => (m.type === 'progress' && m.percent !== null ? [m.percent] : []));
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(percents.at(-1)).toBe(100);

    // Resuming after the second message replays every status change that followed it and the newest
    // progress, and nothing after the end.
    const second = seen[1]?.seq ?? 0;
    const newest = seen.filter((m) => m.type === 'progress').at(-1)?.seq;
    const resumed: StreamMessage[] = [];
    for await (const m of lh.jobs.watch(job.id, { after: second })) resumed.push(m);
    expect(resumed.map((m) => m.seq)).toEqual(
      seen
        .slice(2)
        .filter((m) => m.type === 'status' || m.seq === newest)
        .map((m) => m.seq),
    );
    const none: StreamMessage[] = [];
    for await (const m of lh.jobs.watch(job.id, { after: last?.seq ?? 0 })) none.push(m);
    expect(none).toEqual([]);
  });

  it('falls back to polling when the event stream is unavailable', async () => {
    let refused = 0;
    const lh = client({
      tamper: (request) => {
        if (!new URL(request.url).pathname.endsWith('/events')) return undefined;
        refused++;
        return new Response('{}', { status: 503 });
      },
    });
    const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 3, chunk_ms: 20 } });
    const seen: StreamMessage[] = [];
    for await (const m of lh.jobs.watch(job.id)) seen.push(m);
    expect(refused).toBe(1);
    expect(seen.every((m) => m.type === 'snapshot')).toBe(true);
    expect(seen.at(-1)).toMatchObject({ type: 'snapshot', job: { status: 'COMPLETED' } });
  });

  it('stops when its signal aborts, leaving the job running', async () => {
    const lh = client();
    const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 100, chunk_ms: 50 } });
    const ac = new AbortController();
    const err = await (async () => {
      for await (const m of lh.jobs.watch(job.id, { signal: ac.signal })) if (m.type === 'progress') ac.abort();
    })().catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect((await lh.jobs.get(job.id)).status).toBe('RUNNING');
    await lh.jobs.cancel(job.id);
  });
});

describe('webhooks.verify', () => {
  async function delivered(lh: Longhaul, path: string) {
    const job = await lh.jobs.submit({
      type: 'synthetic',
      input: { chunks: 1, chunk_ms: 1 },
      callback_url: rx.url + path,
    });
    await lh.jobs.wait(job.id, { timeout: 30_000 });
    const got = await waitFor(`a delivery to ${path}`, async () => rx.to(path)[0], 30_000);
    return { job, got };
  }

  it('verifies v1 deliveries with the secret and refuses a tampered body', async () => {
    const lh = client();
    const { job, got } = await delivered(lh, '/v1');
    const event = await lh.webhooks.verify(got.body, got.headers);
    expect(event).toMatchObject({ type: 'job.completed', data: { id: job.id, status: 'COMPLETED' } });
    await expect(lh.webhooks.verify(got.body.replace('COMPLETED', 'FAILED'), got.headers)).rejects.toThrow(
      WebhookVerificationError,
    );
  });

  it('verifies v1a deliveries against the JWKS, fetched once and cached', async () => {
    const tenant = await t.newTenant();
    let jwksFetches = 0;
    const lh = client({
      key: tenant.api_key,
      tamper: (request) => {
        if (new URL(request.url).pathname === '/.well-known/jwks.json') jwksFetches++;
        return undefined;
      },
    });
    await lh.api.PUT('/v1/webhook-settings', { body: { signature_scheme: 'v1a' } });
    const a = await delivered(lh, '/v1a-a');
    const b = await delivered(lh, '/v1a-b');
    expect(String(a.got.headers['webhook-signature'])).toMatch(/^v1a,/);
    expect(await lh.webhooks.verify(a.got.body, a.got.headers)).toMatchObject({ data: { id: a.job.id } });
    expect(await lh.webhooks.verify(b.got.body, b.got.headers)).toMatchObject({ data: { id: b.job.id } });
    expect(jwksFetches).toBe(1);
    await expect(lh.webhooks.verify(a.got.body + ' ', a.got.headers)).rejects.toThrow(WebhookVerificationError);
  });
});
