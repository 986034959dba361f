/** Prometheus metrics of webhook delivery, registered once per registry (API and worker may share one). */
import client from 'prom-client';
import type { Queryable } from '../db/pool.ts';
import { readGauge, type Registry } from '../observability/metrics.ts';
import { countEndpointStates, endpointStates, type BreakerState } from './endpoints.ts';

function once<T extends client.Metric>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function webhookMetrics(registry: Registry) {
  return {
    attempts: once(
      registry,
      'longhaul_webhook_attempts_total',
      () =>
        new client.Counter({
          name: 'longhaul_webhook_attempts_total',
          help: 'Delivery attempts by outcome',
          labelNames: ['outcome'] as const,
          registers: [registry],
        }),
    ),
    attemptDuration: once(
      registry,
      'longhaul_webhook_attempt_duration_seconds',
      () =>
        new client.Histogram({
          name: 'longhaul_webhook_attempt_duration_seconds',
          help: 'Duration of one delivery attempt',
          buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
          registers: [registry],
        }),
    ),
    givenBack: once(
      registry,
      'longhaul_webhook_given_back_total',
      () =>
        new client.Counter({
          name: 'longhaul_webhook_given_back_total',
          help: 'Claimed deliveries given back unstarted because they waited in the buffer too long for a slot',
          registers: [registry],
        }),
    ),
    dead: once(
      registry,
      'longhaul_webhook_dead_total',
      () =>
        new client.Counter({
          name: 'longhaul_webhook_dead_total',
          help: 'Deliveries that went DEAD',
          registers: [registry],
        }),
    ),
    firstAttemptLag: once(
      registry,
      'longhaul_webhook_first_attempt_lag_seconds',
      () =>
        new client.Histogram({
          name: 'longhaul_webhook_first_attempt_lag_seconds',
          help: 'From the terminal state (delivery written) to the start of its first attempt',
          buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5],
          registers: [registry],
        }),
    ),
  };
}

export type WebhookMetrics = ReturnType<typeof webhookMetrics>;

const STATE_VALUE: Record<BreakerState | 'disabled', number> = { closed: 0, half_open: 1, open: 2, disabled: 3 };

/** Dead deliveries are counted exactly up to this (through their partial index), then estimated. */
const DEAD_COUNT_CAP = 10_000;

/** Dead deliveries: exact up to the cap through webhook_deliveries_dead (sql/030), past it the planner's estimate. */
async function deadDeliveries(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM webhook_deliveries WHERE status = 'DEAD' LIMIT ${DEAD_COUNT_CAP + 1}) s`,
  );
  const n = rows[0]?.n ?? 0;
  if (n <= DEAD_COUNT_CAP) return n;
  const { rows: plan } = await db.query<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>(
    `EXPLAIN (FORMAT JSON) SELECT 1 FROM webhook_deliveries WHERE status = 'DEAD'`,
  );
  return Math.max(n, Math.round(plan[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'] ?? 0));
}

/**
 * Scrape-time gauges of delivery, read from the database so any process serving /metrics shows every
 * dispatcher's: endpoints per breaker state, dead deliveries and, only when the operator allows tenant
 * labels, `longhaul_webhook_endpoint_state{endpoint_id}` (0 closed, 1 half-open, 2 open, 3 disabled),
 * labelled by the endpoint's id (GET /v1/webhook-endpoints), never its URL, whose path may hold a credential.
 */
export function registerWebhookGauges(registry: Registry, db: Queryable, opts: { tenantLabels: boolean }): void {
  readGauge(registry, {
    name: 'longhaul_webhook_endpoints',
    help: 'Webhook endpoints (a tenant and URL) by circuit breaker state: closed, half_open, open, disabled',
    labelNames: ['state'] as const,
    read: () => countEndpointStates(db),
    show: (g, rows) => {
      for (const state of Object.keys(STATE_VALUE)) g.set({ state }, 0);
      for (const r of rows) g.set({ state: r.state }, r.n);
    },
  });
  readGauge(registry, {
    name: 'longhaul_dead_letter_deliveries',
    help: 'Webhook deliveries that went DEAD and were not replayed, exact up to 10000, else the planner estimate',
    read: () => deadDeliveries(db),
    show: (g, n) => g.set(n),
  });
  if (!opts.tenantLabels) return;
  readGauge(registry, {
    name: 'longhaul_webhook_endpoint_state',
    help: 'Circuit breaker state per webhook endpoint (a tenant and URL): 0 closed, 1 half-open, 2 open, 3 disabled',
    labelNames: ['endpoint_id'] as const,
    read: () => endpointStates(db),
    show: (g, rows) => {
      for (const e of rows) g.set({ endpoint_id: e.id }, STATE_VALUE[e.disabled ? 'disabled' : e.state]);
    },
  });
}
