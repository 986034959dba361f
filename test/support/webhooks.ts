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

/**
 * A test service's settings for circuit breaker tests: seven attempts 50 ms apart, so that a failing
 * endpoint's deliveries would be dead at once unless its breaker held them, and a breaker that opens when
 * half of an endpoint's last 4 outcomes failed and waits `cooldownSeconds` before its probe.
 */
export const breakerEnv = (cooldownSeconds: number): Record<string, string> => ({
  LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
  LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.05,0.05,0.05,0.05,0.05,0.05,0.05',
  LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: '0',
  LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '2',
  LONGHAUL_WEBHOOK_POLL_SECONDS: '0.1',
  LONGHAUL_BREAKER_WINDOW: '4',
  LONGHAUL_BREAKER_MIN_REQUESTS: '4',
  LONGHAUL_BREAKER_FAILURE_RATIO: '0.5',
  LONGHAUL_BREAKER_COOLDOWN_SECONDS: String(cooldownSeconds),
  // The per-endpoint breaker gauge names an endpoint: shown only when the operator allows tenant labels.
  LONGHAUL_METRICS_TENANT_LABELS: 'true',
  // Each scrape reads the database: the gauge is checked right after the state it shows changes.
  LONGHAUL_METRICS_REFRESH_SECONDS: '0',
});

export interface WebhookEndpoint {
  id: string;
  endpoint: string;
  state: string;
  successes: number;
  failures: number;
  disabled_at: string | null;
}

/** The endpoints a tenant sees through GET /v1/webhook-endpoints; `key`: another tenant's API key. */
export async function webhookEndpoints(t: TestService, key?: string): Promise<WebhookEndpoint[]> {
  const res = await t.api('/v1/webhook-endpoints', { key });
  if (res.status !== 200) throw new Error(`GET /v1/webhook-endpoints answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { data: WebhookEndpoint[] }).data;
}

/** The status and attempts of the deliveries of `jobIds`, oldest first. */
export async function deliveryStatuses(
  t: TestService,
  jobIds: string[],
): Promise<Array<{ status: string; attempts: number }>> {
  const { rows } = await t.service.pool.query<{ status: string; attempts: number }>(
    'SELECT status, attempts FROM webhook_deliveries WHERE job_id = ANY($1::uuid[]) ORDER BY created_at',
    [jobIds],
  );
  return rows;
}
