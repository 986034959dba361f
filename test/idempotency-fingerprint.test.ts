/**
 * Two different bodies must never count as the same request for an Idempotency-Key. JSON that the
 * schema or the database would not keep as sent (a `__proto__` key, which object schemas drop; a number
 * beyond double range, which parses to Infinity and is stored as null) is refused with 422, so it can
 * neither be stored changed nor make a different body look like a replay.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

async function post(body: string, key: string): Promise<Response> {
  return fetch(`${t.url}/v1/jobs`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${t.tenant.api_key}`,
      'content-type': 'application/json',
      'idempotency-key': key,
    },
    body,
  });
}

it.each([
  ['a __proto__ metadata key', '{"__proto__":{"x":1},"b":2}', '{"b":2}'],
  ['an out-of-range number', '{"a":1e400}', '{"a":null}'],
])('does not replay a different body after %s', async (_name, firstMeta, secondMeta) => {
  const key = randomUUID();
  const first = await post(`{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":${firstMeta}}`, key);
  const firstText = await first.text();
  expect(first.status, firstText).toBe(422);
  expect((JSON.parse(firstText) as { type: string }).type).toBe('https://longhaul.dev/problems/validation-error');
  const second = await post(`{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":${secondMeta}}`, key);
  const text = await second.text();
  // The first was refused and created nothing: the second, a different body, is a new job, not a replay.
  expect(second.headers.get('idempotent-replayed'), `${second.status} ${text}`).toBeNull();
});
