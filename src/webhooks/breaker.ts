/**
 * Circuit breaker per endpoint: a tenant's callback URL without query (sql/016). Each dispatcher keeps a window of the latest
 * outcomes per endpoint (breaker-window.ts); when most of them failed it opens the breaker in the
 * webhook_endpoints table, where every dispatcher (and the API) sees it. Deliveries to an open endpoint
 * are not claimed, so they wait without spending attempts. After the cool-down one dispatcher wins the
 * right to send one probe (half-open, with a lease); a success closes the breaker, a failure opens it
 * for another cool-down.
 *
 * Here are the statements that change an endpoint's breaker together with its waiting deliveries, built
 * from the fragments of the tables' own modules (endpoints.ts, store.ts).
 */
import type { Queryable } from '../db/pool.ts';
import {
  ENABLE_ENDPOINT_SQL,
  OPEN_ENDPOINT_SQL,
  tenantEndpoint,
  type BreakerState,
  type EndpointRow,
} from './endpoints.ts';
import { WEBHOOKS_CHANNEL } from './outbox.ts';
import { makeWaitingDueSql, pushWaitingPastSql } from './store.ts';

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
    `WITH o AS (${OPEN_ENDPOINT_SQL}),
     moved AS (${pushWaitingPastSql('o')})
     SELECT count(*)::int AS opened FROM o`,
    [endpoint, cooldownSeconds, fromStates],
  );
  return (rows[0]?.opened ?? 0) > 0;
}

/**
 * Enables a tenant's endpoint that a 410 answer disabled: its breaker starts closed, and its waiting
 * deliveries are due at once (the dispatchers are woken on commit). Enabling an endpoint that is not
 * disabled changes nothing. Undefined when the tenant has no such endpoint.
 */
export async function enableEndpoint(db: Queryable, tenantId: string, id: string): Promise<EndpointRow | undefined> {
  await db.query(
    `WITH en AS (${ENABLE_ENDPOINT_SQL}),
     due AS (${makeWaitingDueSql('en')})
     SELECT pg_notify('${WEBHOOKS_CHANNEL}', '') FROM en`,
    [id, tenantId],
  );
  return tenantEndpoint(db, tenantId, id);
}
