/**
 * POST /v1/jobs has two doors: the Node-level lane the server uses (src/api/submit-lane.ts) and the
 * Hono route behind app.request(). Both must answer every request alike: same status, headers and
 * body (ids and times aside), and they share one idempotency store. LONGHAUL_BODY_LIMIT_BYTES holds
 * beyond this route too: a body another route reads (a retry's optional one) is refused with 413 while reading.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type AppHandle } from '../src/api/app.ts';
import { JobSubmitter } from '../src/jobs/submit.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
let hono: AppHandle;
const LIMIT = 2048;

beforeAll(async () => {
  t = await startTestService({ env: { LONGHAUL_BODY_LIMIT_BYTES: String(LIMIT) } });
  const { config, pool, boss, log, metrics, registry } = t.service;
  hono = createApp({ config, pool, boss, log, metrics, registry, submitter: new JobSubmitter(pool, boss) });
});
afterAll(async () => t.stop());

interface Answer {
  status: number;
  headers: Record<string, string | null>;
  body: unknown;
}

/** The parts of a response both doors must agree on; generated ids and times are masked. */
async function answer(res: Response, masks: string[]): Promise<Answer> {
  const pick = ['content-type', 'location', 'idempotent-replayed', 'www-authenticate', 'retry-after', 'x-request-id'];
  const mask = (v: string) => masks.reduce((acc, m) => (m === '' ? acc : acc.replaceAll(m, '<masked>')), v);
  const headers = Object.fromEntries(pick.map((h) => [h, ((v) => (v === null ? null : mask(v)))(res.headers.get(h))]));
  const text = mask(await res.text());
  const body: unknown = JSON.parse(text);
  if (typeof body === 'object' && body !== null && 'created_at' in body)
    Object.assign(body, { created_at: '<time>', updated_at: '<time>' });
  return { status: res.status, headers, body };
}

type Init = { headers?: Record<string, string>; body?: string };

/** The same request through the lane (real HTTP) and through Hono (app.request); `perDoor` headers differ between them. */
async function both(
  init: Init,
  path = '/v1/jobs',
  perDoor: () => Record<string, string> = () => ({}),
): Promise<{ lane: Answer; hono: Answer }> {
  const headers = { authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/json', ...init.headers };
  const viaLane = await fetch(t.url + path, { method: 'POST', headers: { ...headers, ...perDoor() }, body: init.body });
  // fetch sends Content-Length itself; app.request would not.
  const length = init.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(init.body)) };
  const viaHono = await hono.app.request(path, {
    method: 'POST',
    headers: { ...headers, ...length, ...perDoor() },
    body: init.body,
  });
  const ids = [viaLane, viaHono]
    .map((r) => r.headers.get('location')?.split('/').pop())
    .filter((x): x is string => x !== undefined);
  const ridLane = viaLane.headers.get('x-request-id') ?? '';
  const ridHono = viaHono.headers.get('x-request-id') ?? '';
  const given = init.headers?.['x-request-id'];
  return {
    lane: await answer(viaLane, given === undefined ? [...ids, ridLane] : ids),
    hono: await answer(viaHono, given === undefined ? [...ids, ridHono] : ids),
  };
}

const job = (extra: object = {}) => JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 }, ...extra });

describe('POST /v1/jobs through the lane and through Hono', () => {
  it.each<[string, Init, number, string?]>([
    ['a new job', { body: job({ metadata: { a: 1 } }) }, 202],
    ['a new job with an Idempotency-Key', { body: job(), headers: { 'idempotency-key': 'fresh' } }, 202],
    ['a caller request id', { body: job(), headers: { 'x-request-id': 'req-123' } }, 202],
    ['no API key', { body: job(), headers: { authorization: '' } }, 401, 'unauthorized'],
    ['a wrong API key', { body: job(), headers: { authorization: 'Bearer lh_wrong' } }, 401, 'unauthorized'],
    ['a text body', { body: job(), headers: { 'content-type': 'text/plain' } }, 415, 'unsupported-media-type'],
    ['a body over the limit', { body: job({ metadata: { pad: 'x'.repeat(LIMIT) } }) }, 413, 'payload-too-large'],
    ['malformed JSON', { body: '{"type":' }, 400, 'malformed-json'],
    ['an unknown field', { body: job({ colour: 'red' }) }, 422, 'validation-error'],
    ['no type', { body: JSON.stringify({ input: {} }) }, 422, 'validation-error'],
    ['an unknown type', { body: JSON.stringify({ type: 'nope', input: {} }) }, 422, 'unknown-job-type'],
    [
      'input the type refuses',
      { body: JSON.stringify({ type: 'synthetic', input: { chunks: -1 } }) },
      422,
      'validation-error',
    ],
    ['a bad callback URL', { body: job({ callback_url: 'ftp://x' }) }, 422, 'validation-error'],
    ['a bad Idempotency-Key', { body: job(), headers: { 'idempotency-key': 'has space' } }, 400, 'bad-request'],
  ])('%s', async (_name, init, status, code) => {
    // A fresh key is used once per door, or the second door would replay the first one's job.
    const fresh = init.headers?.['idempotency-key'] === 'fresh';
    const { lane, hono: viaHono } = await both(init, '/v1/jobs', (): Record<string, string> =>
      fresh ? { 'idempotency-key': randomUUID() } : {},
    );
    expect(lane.status).toBe(status);
    expect(viaHono).toEqual(lane);
    if (code !== undefined) expect((lane.body as { type: string }).type).toBe(`https://longhaul.dev/problems/${code}`);
  });

  it('shares one idempotency store: either door replays the other one’s job, and refuses a different body', async () => {
    const key = randomUUID();
    const first = await fetch(`${t.url}/v1/jobs`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${t.tenant.api_key}`,
        'content-type': 'application/json',
        'idempotency-key': key,
      },
      body: job(),
    });
    expect(first.status).toBe(202);
    const id = ((await first.json()) as { id: string }).id;
    const replay = await both({ body: job(), headers: { 'idempotency-key': key } });
    expect(replay.lane.status).toBe(202);
    expect(replay.lane.headers['idempotent-replayed']).toBe('true');
    expect(replay.hono).toEqual(replay.lane);
    expect(replay.lane.headers.location).toBe('/v1/jobs/<masked>');
    const again = await hono.app.request('/v1/jobs', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${t.tenant.api_key}`,
        'content-type': 'application/json',
        'idempotency-key': key,
      },
      body: job(),
    });
    expect(((await again.json()) as { id: string }).id).toBe(id);
    const reused = await both({ body: job({ metadata: { other: true } }), headers: { 'idempotency-key': key } });
    expect(reused.lane.status).toBe(422);
    expect(reused.hono).toEqual(reused.lane);
    const { rows } = await t.service.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM jobs WHERE idempotency_key = $1',
      [key],
    );
    expect(rows[0]?.n).toBe(1);
  });

  it('takes the route with a query string too, and leaves every other request to Hono', async () => {
    const { lane, hono: viaHono } = await both({ body: job() }, '/v1/jobs?from=test');
    expect(lane.status).toBe(202);
    expect(viaHono).toEqual(lane);
    const list = await t.api('/v1/jobs?limit=1');
    expect(list.status).toBe(200);
    const trailing = await t.api('/v1/jobs/', { method: 'POST', json: JSON.parse(job()) as unknown });
    expect(trailing.status).toBe(404);
  });

  it('answers application/a+b+json the same through the lane and through Hono', async () => {
    // A media type only one of them could read: both take the JSON media types Hono's validator reads.
    const { lane, hono: viaHono } = await both({ body: job(), headers: { 'content-type': 'application/a+b+json' } });
    const type = (a: Answer) => (a.body as { type?: string }).type;
    expect({ status: viaHono.status, type: type(viaHono) }, JSON.stringify(viaHono.body)).toEqual({
      status: lane.status,
      type: type(lane),
    });
  });

  it('counts and times its requests under the route like Hono does', async () => {
    const res = await t.api('/metrics');
    const text = await res.text();
    expect(text).toMatch(
      /longhaul_http_requests_total\{[^}]*method="POST"[^}]*route="\/v1\/jobs"[^}]*status="202"[^}]*\} [1-9]/,
    );
  });
});

describe('the body limit on the routes only Hono answers', () => {
  it('refuses a retry body over the limit with 413', async () => {
    const created = await fetch(`${t.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/json' },
      body: job(),
    });
    const { id } = (await created.json()) as { id: string };
    const res = await fetch(`${t.url}/v1/jobs/${id}/retry`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'start', pad: 'x'.repeat(1_000_000) }),
    });
    const text = await res.text();
    expect(res.status, text).toBe(413);
    expect((JSON.parse(text) as { type: string }).type).toBe('https://longhaul.dev/problems/payload-too-large');
  });
});
