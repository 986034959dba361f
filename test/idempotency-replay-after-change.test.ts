/**
 * A repeat of a request that created a job is answered with that job (Idempotent-Replayed), even when
 * the request would no longer be accepted: here the callback allow-list changed between the two (as a
 * deploy between a partner's request and its retry might change it). Refusing it would tell the partner
 * that nothing was created, and a resubmission under a new key would create the job twice.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestService, type TestService } from './support/service.ts';

let db: TestDatabase;
let before: TestService;
let after: TestService;
beforeAll(async () => {
  db = await createTestDatabase();
  before = await startTestService({ db, env: { LONGHAUL_CALLBACK_ALLOW: '127.0.0.1' } });
  after = await startTestService({ db });
});
afterAll(async () => {
  await after.stop();
  await before.stop();
  await db.drop();
});

it('replays the stored job for a repeat that the changed configuration would refuse, and refuses a new request', async () => {
  const key = randomUUID();
  const body = { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: 'http://127.0.0.1:9/hook' };
  const first = await before.api('/v1/jobs', {
    method: 'POST',
    key: before.tenant.api_key,
    headers: { 'idempotency-key': key },
    json: body,
  });
  expect(first.status).toBe(202);
  const created = (await first.json()) as { id: string };

  const repeat = await after.api('/v1/jobs', {
    method: 'POST',
    key: before.tenant.api_key,
    headers: { 'idempotency-key': key },
    json: body,
  });
  const text = await repeat.text();
  expect(repeat.status, text).toBe(202);
  expect(repeat.headers.get('idempotent-replayed')).toBe('true');
  expect((JSON.parse(text) as { id: string }).id).toBe(created.id);

  // The same body under a new key is a new request, and the new configuration refuses it.
  const fresh = await after.api('/v1/jobs', {
    method: 'POST',
    key: before.tenant.api_key,
    headers: { 'idempotency-key': randomUUID() },
    json: body,
  });
  expect(fresh.status).toBe(422);
});
