/**
 * Circuit breaker per endpoint: a tenant's callback URL without query (sql/016). Each dispatcher keeps a window of the latest
 * outcomes per endpoint (breaker-window.ts); when most of them failed it opens the breaker in the
 * webhook_endpoints table, where every dispatcher (and the API) sees it. Deliveries to an open endpoint
 * are not claimed, so they wait without spending attempts. After the cool-down one dispatcher wins the
 * right to send one probe (half-open, with a lease); a success closes the breaker, a failure opens it
 * for another cool-down.
 */
import type { Queryable } from '../db/pool.ts';
import { WEBHOOKS_CHANNEL } from './outbox.ts';

export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * Opens a closed breaker and moves the endpoint's waiting deliveries past the cool-down (so the claim
 * query does not keep stepping over them). Returns false when another dispatcher opened it first.
 */
export async function openBreaker(
  db: Queryable,
  endpoint: string,
  cooldownSeconds: number,
  fromStates: BreakerState[] = ['closed'],
): Promise<boolean> {
  const { rows } = await db.query<{ opened: number }>(
    `WITH o AS (
       INSERT INTO webhook_endpoints (endpoint, state, retry_at, opened_at, updated_at)
       VALUES ($1, 'open', now() + make_interval(secs => $2), now(), now())
       ON CONFLICT (endpoint) DO UPDATE SET state = 'open', retry_at = EXCLUDED.retry_at,
              opened_at = CASE WHEN webhook_endpoints.state = 'closed' THEN now() ELSE webhook_endpoints.opened_at END, updated_at = now()
        WHERE webhook_endpoints.state = ANY($3::text[])
       RETURNING retry_at),
     moved AS (
       UPDATE webhook_deliveries d SET next_attempt_at = greatest(d.next_attempt_at, o.retry_at)
         FROM o WHERE d.endpoint = $1 AND d.status = 'PENDING' AND d.claim_token IS NULL)
     SELECT count(*)::int AS opened FROM o`,
    [endpoint, cooldownSeconds, fromStates],
  );
  return (rows[0]?.opened ?? 0) > 0;
}

/** Takes the one probe of an open endpoint whose cool-down is over (or whose probe's lease ran out). */
export async function takeProbe(db: Queryable, endpoint: string, leaseSeconds: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE webhook_endpoints SET state = 'half_open', retry_at = now() + make_interval(secs => $2), updated_at = now()
      WHERE endpoint = $1 AND state <> 'closed' AND retry_at <= now()`,
    [endpoint, leaseSeconds],
  );
  return rowCount === 1;
}

export async function closeBreaker(db: Queryable, endpoint: string): Promise<void> {
  await db.query(
    `UPDATE webhook_endpoints SET state = 'closed', retry_at = NULL, opened_at = NULL, recent_total = 0, recent_failures = 0, updated_at = now()
      WHERE endpoint = $1 AND state <> 'closed'`,
    [endpoint],
  );
}

export interface EndpointRow {
  /** Names the endpoint in the API (md5 of its key, so even one with no breaker row yet has it). */
  id: string;
  /** scheme://host:port/path, without the tenant. */
  endpoint: string;
  state: BreakerState;
  retry_at: Date | null;
  opened_at: Date | null;
  recent_total: number;
  recent_failures: number;
  successes: number;
  failures: number;
  last_success_at: Date | null;
  last_failure_at: Date | null;
  disabled_at: Date | null;
  pending: number;
  dead: number;
}

const ENDPOINT_COLUMNS = `md5(t.endpoint)::uuid AS id, split_part(t.endpoint, ' ', 2) AS endpoint, coalesce(e.state, 'closed') AS state,
            e.retry_at, e.opened_at, coalesce(e.recent_total, 0) AS recent_total, coalesce(e.recent_failures, 0) AS recent_failures,
            coalesce(e.successes, 0) AS successes, coalesce(e.failures, 0) AS failures,
            e.last_success_at, e.last_failure_at, e.disabled_at`;

/**
 * The endpoints a tenant's deliveries go to, with their breaker state and counters. Endpoints are keyed
 * by tenant (sql/016), so these are the tenant's own counters, whoever else calls the same host.
 */
export async function listTenantEndpoints(db: Queryable, tenantId: string): Promise<EndpointRow[]> {
  const { rows } = await db.query<EndpointRow>(
    `SELECT ${ENDPOINT_COLUMNS}, t.pending, t.dead
       FROM (SELECT endpoint, count(*) FILTER (WHERE status = 'PENDING')::int AS pending,
                    count(*) FILTER (WHERE status = 'DEAD')::int AS dead
               FROM webhook_deliveries WHERE tenant_id = $1 GROUP BY endpoint) t
       LEFT JOIN webhook_endpoints e ON e.endpoint = t.endpoint
      ORDER BY t.endpoint`,
    [tenantId],
  );
  return rows;
}

/**
 * Enables a tenant's endpoint that a 410 answer disabled: its breaker starts closed, and its waiting
 * deliveries are due at once (the dispatchers are woken on commit). Enabling an endpoint that is not
 * disabled changes nothing. Undefined when the tenant has no such endpoint.
 */
export async function enableEndpoint(db: Queryable, tenantId: string, id: string): Promise<EndpointRow | undefined> {
  await db.query(
    `WITH en AS (
       UPDATE webhook_endpoints SET disabled_at = NULL, state = 'closed', retry_at = NULL, opened_at = NULL,
              recent_total = 0, recent_failures = 0, updated_at = now()
        WHERE id = $1 AND tenant_id = $2 AND disabled_at IS NOT NULL
        RETURNING endpoint),
     due AS (
       UPDATE webhook_deliveries d SET next_attempt_at = now(), updated_at = now()
         FROM en WHERE d.endpoint = en.endpoint AND d.status = 'PENDING' AND d.claim_token IS NULL
       RETURNING d.id)
     SELECT pg_notify('${WEBHOOKS_CHANNEL}', '') FROM en`,
    [id, tenantId],
  );
  const { rows: found } = await db.query<EndpointRow>(
    `SELECT ${ENDPOINT_COLUMNS}, t.pending, t.dead
       FROM (SELECT endpoint, count(*) FILTER (WHERE status = 'PENDING')::int AS pending,
                    count(*) FILTER (WHERE status = 'DEAD')::int AS dead
               FROM webhook_deliveries WHERE tenant_id = $1 GROUP BY endpoint) t
       LEFT JOIN webhook_endpoints e ON e.endpoint = t.endpoint
      WHERE md5(t.endpoint)::uuid = $2`,
    [tenantId, id],
  );
  return found[0];
}

/** Each endpoint's state for the metrics gauge, by endpoint id (a URL's path may hold a credential). */
export async function endpointStates(
  db: Queryable,
): Promise<Array<{ id: string; state: BreakerState; disabled: boolean }>> {
  const { rows } = await db.query<{ id: string; state: BreakerState; disabled: boolean }>(
    'SELECT id, state, disabled_at IS NOT NULL AS disabled FROM webhook_endpoints ORDER BY id',
  );
  return rows;
}

/** How many endpoints are in each breaker state (`disabled` for those a 410 disabled), for the metrics. */
export async function countEndpointStates(
  db: Queryable,
): Promise<Array<{ state: BreakerState | 'disabled'; n: number }>> {
  const { rows } = await db.query<{ state: BreakerState | 'disabled'; n: number }>(
    `SELECT CASE WHEN disabled_at IS NOT NULL THEN 'disabled' ELSE state END AS state, count(*)::int AS n
       FROM webhook_endpoints GROUP BY 1`,
  );
  return rows;
}
