/** Jobs whose webhooks are in the outbox: submitted with a callback URL and moved straight to a terminal status. */
import { transition } from './status.ts';
import type { TestService } from './service.ts';

async function submitted(t: TestService, callbackUrl: string, key?: string): Promise<string> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    key,
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 }, callback_url: callbackUrl },
  });
  if (res.status !== 202) throw new Error(`POST /v1/jobs answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

/** A job COMPLETED (through RUNNING, as a worker would move it) with a `job.completed` webhook to `callbackUrl`. */
export async function completedJob(t: TestService, callbackUrl: string): Promise<string> {
  const id = await submitted(t, callbackUrl);
  await transition(t.service.pool, id, 'RUNNING', { extraSql: ', started_at = now(), attempts = 1' });
  await transition(t.service.pool, id, 'COMPLETED', { result: {} });
  return id;
}

/** A job CANCELLED while PENDING, with a `job.cancelled` webhook to `callbackUrl`; `key`: another tenant's API key. */
export async function cancelledJob(t: TestService, callbackUrl: string, key?: string): Promise<string> {
  const id = await submitted(t, callbackUrl, key);
  await transition(t.service.pool, id, 'CANCELLED');
  return id;
}
