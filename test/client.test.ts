/**
 * A typed client generated from openapi.yaml (openapi-typescript types in test/generated, openapi-fetch)
 * drives the running server: create, read, list and cancel a job. Every response is validated against
 * the spec by a client middleware, so the spec describes what the server really sends.
 */
import createClient, { type Middleware } from 'openapi-fetch';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { paths } from './generated/api.d.ts';
import { startTestService, type TestService } from './support/service.ts';
import { spec } from './support/spec.ts';

let t: TestService;
let checked = 0;
/** Checks every response against openapi.yaml; throwing here fails the call, hence the test. */
const conformance: Middleware = {
  async onResponse({ request, response }) {
    await spec().check(request.method, request.url, response);
    checked++;
    return undefined;
  },
};

function client(key: string) {
  const c = createClient<paths>({ baseUrl: t.url, headers: { Authorization: `Bearer ${key}` } });
  c.use(conformance);
  return c;
}

beforeAll(async () => {
  // The API role only: no worker takes the job, so it stays PENDING until it is cancelled.
  t = await startTestService({ roles: ['api'] });
});
afterAll(async () => t.stop());

it('creates, reads, lists and cancels a job through the generated client', async () => {
  const api = client(t.tenant.api_key);
  const idempotencyKey = crypto.randomUUID();
  const body = { type: 'synthetic', input: { chunks: 3, chunk_ms: 1 }, metadata: { order: 42 } };

  const created = await api.POST('/v1/jobs', { params: { header: { 'idempotency-key': idempotencyKey } }, body });
  expect(created.response.status).toBe(202);
  const job = created.data;
  if (job === undefined) throw new Error(`no job: ${JSON.stringify(created.error)}`);
  expect(job.status).toBe('PENDING');
  expect(job.metadata).toEqual({ order: 42 });
  expect(created.response.headers.get('location')).toBe(`/v1/jobs/${job.id}`);

  const replay = await api.POST('/v1/jobs', { params: { header: { 'idempotency-key': idempotencyKey } }, body });
  expect(replay.response.headers.get('idempotent-replayed')).toBe('true');
  expect(replay.data?.id).toBe(job.id);

  const read = await api.GET('/v1/jobs/{id}', { params: { path: { id: job.id } } });
  expect(read.data?.id).toBe(job.id);
  expect(read.data?.progress).toEqual({ processed: 0, total: null, percent: null });

  const listed = await api.GET('/v1/jobs', { params: { query: { status: 'PENDING', limit: 10 } } });
  expect(listed.data?.data.map((j) => j.id)).toContain(job.id);
  expect(listed.data?.next_cursor).toBeNull();

  const cancelled = await api.POST('/v1/jobs/{id}/cancel', { params: { path: { id: job.id } } });
  expect(cancelled.response.status).toBe(200);
  expect(cancelled.data?.status).toBe('CANCELLED');

  const again = await api.POST('/v1/jobs/{id}/cancel', { params: { path: { id: job.id } } });
  expect(again.response.status).toBe(409);
  expect(again.error?.type).toBe('https://longhaul.dev/problems/invalid-state');
  expect(checked).toBeGreaterThanOrEqual(6);
});

it('sees problems, typed, for what another tenant owns, bad input and a bad key', async () => {
  const mine = client(t.tenant.api_key);
  const created = await mine.POST('/v1/jobs', { body: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } } });
  const id = created.data?.id ?? '';
  const other = client((await t.newTenant()).api_key);

  const hidden = await other.GET('/v1/jobs/{id}', { params: { path: { id } } });
  expect(hidden.response.status).toBe(404);
  expect(hidden.error?.status).toBe(404);
  expect((await other.POST('/v1/jobs/{id}/cancel', { params: { path: { id } } })).response.status).toBe(404);
  expect((await other.GET('/v1/jobs', {})).data?.data).toEqual([]);

  const invalid = await mine.POST('/v1/jobs', { body: { type: 'synthetic', input: { chunks: -1, chunk_ms: 1 } } });
  expect(invalid.response.status).toBe(422);
  expect(invalid.error?.errors?.[0]?.field).toBe('input.chunks');

  const badCursor = await mine.GET('/v1/jobs', { params: { query: { cursor: 'nope' } } });
  expect(badCursor.response.status).toBe(400);

  const unauthorised = await client('lh_not-a-key').GET('/v1/jobs', {});
  expect(unauthorised.response.status).toBe(401);
  expect(unauthorised.response.headers.get('www-authenticate')).toContain('Bearer');
});
