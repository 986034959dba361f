/**
 * POST /v1/jobs/{id}/retry takes an optional JSON body; one that is sent is read under
 * LONGHAUL_BODY_LIMIT_BYTES like every JSON body: over the limit it is refused with 413 while reading.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ env: { LONGHAUL_BODY_LIMIT_BYTES: '2048' } });
});
afterAll(async () => t.stop());

it('refuses a retry body over the limit with 413', async () => {
  const created = await fetch(`${t.url}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } }),
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
