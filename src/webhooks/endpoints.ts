/**
 * SQL of the webhook_endpoints table: each tenant's endpoint (its callback URL without query, sql/016)
 * with its circuit breaker state and counters. Statements that also move the endpoint's deliveries are
 * built in breaker.ts from the fragments here and in store.ts.
 */
import type { Queryable } from '../db/pool.ts';

export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * A data-modifying CTE body that opens the breaker of endpoint $1 for $2 seconds, if it is in one of the
 * states $3 (creating its row if need be). Returns the endpoint and the end of its cool-down when it did.
 */
export const OPEN_ENDPOINT_SQL = `INSERT INTO webhook_endpoints (endpoint, state, retry_at, opened_at, updated_at)
       VALUES ($1, 'open', now() + make_interval(secs => $2), now(), now())
       ON CONFLICT (endpoint) DO UPDATE SET state = 'open', retry_at = EXCLUDED.retry_at,
              opened_at = CASE WHEN webhook_endpoints.state = 'closed' THEN now() ELSE webhook_endpoints.opened_at END, updated_at = now()
        WHERE webhook_endpoints.state = ANY($3::text[])
       RETURNING endpoint, retry_at`;

/**
 * A data-modifying CTE body that enables endpoint $1 of tenant $2 if a 410 disabled it: its breaker starts
 * closed with a fresh window. Returns the endpoint when it did.
 */
export const ENABLE_ENDPOINT_SQL = `UPDATE webhook_endpoints SET disabled_at = NULL, state = 'closed', retry_at = NULL, opened_at = NULL,
              recent_total = 0, recent_failures = 0, updated_at = now()
        WHERE id = $1 AND tenant_id = $2 AND disabled_at IS NOT NULL
        RETURNING endpoint`;

/**
 * A data-modifying CTE body that adds a batch's outcomes to each endpoint's counters, from `counts`, a
 * relation of (endpoint, ok, failed, gone, recent_total, recent_failures): successes and failures, the
 * last of each, a 410 disabling it, and the breaker window's latest counts.
 */
export function addEndpointCountsSql(counts: string): string {
  return `INSERT INTO webhook_endpoints AS e (endpoint, successes, failures, last_success_at, last_failure_at, disabled_at, recent_total, recent_failures, updated_at)
       SELECT x.endpoint, x.ok, x.failed, CASE WHEN x.ok > 0 THEN now() END, CASE WHEN x.failed > 0 THEN now() END,
              CASE WHEN x.gone THEN now() END, x.recent_total, x.recent_failures, now()
         FROM ${counts} x
       ON CONFLICT (endpoint) DO UPDATE SET
              successes = e.successes + EXCLUDED.successes, failures = e.failures + EXCLUDED.failures,
              last_success_at = coalesce(EXCLUDED.last_success_at, e.last_success_at),
              last_failure_at = coalesce(EXCLUDED.last_failure_at, e.last_failure_at),
              disabled_at = coalesce(e.disabled_at, EXCLUDED.disabled_at),
              recent_total = EXCLUDED.recent_total, recent_failures = EXCLUDED.recent_failures, updated_at = now()`;
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

/** The tenant's endpoints with their counts of pending and dead deliveries, then `rest` (a filter, an order). */
const tenantEndpointsSql = (rest: string) => `SELECT ${ENDPOINT_COLUMNS}, t.pending, t.dead
       FROM (SELECT endpoint, count(*) FILTER (WHERE status = 'PENDING')::int AS pending,
                    count(*) FILTER (WHERE status = 'DEAD')::int AS dead
               FROM webhook_deliveries WHERE tenant_id = $1 GROUP BY endpoint) t
       LEFT JOIN webhook_endpoints e ON e.endpoint = t.endpoint
      ${rest}`;

/**
 * The endpoints a tenant's deliveries go to, with their breaker state and counters. Endpoints are keyed
 * by tenant (sql/016), so these are the tenant's own counters, whoever else calls the same host.
 */
export async function listTenantEndpoints(db: Queryable, tenantId: string): Promise<EndpointRow[]> {
  const { rows } = await db.query<EndpointRow>(tenantEndpointsSql('ORDER BY t.endpoint'), [tenantId]);
  return rows;
}

/** One endpoint of the tenant's, by id; undefined when the tenant has none such. */
export async function tenantEndpoint(db: Queryable, tenantId: string, id: string): Promise<EndpointRow | undefined> {
  const { rows } = await db.query<EndpointRow>(tenantEndpointsSql('WHERE md5(t.endpoint)::uuid = $2'), [tenantId, id]);
  return rows[0];
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
