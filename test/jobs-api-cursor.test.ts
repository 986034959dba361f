/**
 * A forged list cursor naming an instant Postgres's timestamptz refuses (30 February, year 0000: Date.parse
 * takes both) answers 400 bad-request, as any cursor this API did not return does, not 500.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

const cursor = (s: string) => Buffer.from(s).toString('base64url');

it.each([
  ['February 30', '2024-02-30T00:00:00.000000Z'],
  ['April 31', '2024-04-31T12:00:00.000000Z'],
  ['year 0000', '0000-01-01T00:00:00.000000Z'],
])('a cursor naming %s answers 400 bad-request, not 500', async (_name, at) => {
  const res = await fetch(`${t.url}/v1/jobs?cursor=${cursor(`${at}|00000000-0000-0000-0000-000000000000`)}`, {
    headers: { authorization: `Bearer ${t.tenant.api_key}` },
  });
  const text = await res.text();
  expect(res.status, text).toBe(400);
  expect((JSON.parse(text) as { type: string }).type).toBe('https://longhaul.dev/problems/bad-request');
});
