/**
 * The submit lane and the Hono route answer POST /v1/jobs alike (src/api/submit-lane.ts), also for a
 * media type only one of them could read: both take the JSON media types Hono's validator reads.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createApp, type AppHandle } from '../src/api/app.ts';
import { JobSubmitter } from '../src/jobs/submit.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
let hono: AppHandle;
beforeAll(async () => {
  t = await startTestService();
  const { config, pool, boss, log, metrics, registry } = t.service;
  hono = createApp({ config, pool, boss, log, metrics, registry, submitter: new JobSubmitter(pool, boss) });
});
afterAll(async () => t.stop());

it('answers application/a+b+json the same through the lane and through Hono', async () => {
  const body = JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });
  const headers = { authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/a+b+json' };
  const lane = await fetch(`${t.url}/v1/jobs`, { method: 'POST', headers, body });
  const viaHono = await hono.app.request('/v1/jobs', {
    method: 'POST',
    headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
    body,
  });
  const laneText = await lane.text();
  const honoText = await viaHono.text();
  expect({ status: viaHono.status, type: (JSON.parse(honoText) as { type?: string }).type }, honoText).toEqual({
    status: lane.status,
    type: (JSON.parse(laneText) as { type?: string }).type,
  });
});
