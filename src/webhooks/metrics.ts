/** Prometheus metrics of webhook delivery, registered once per registry (API and worker may share one). */
import client from 'prom-client';
import type { Queryable } from '../db/pool.ts';
import type { Registry } from '../observability/metrics.ts';
import { endpointStates, type BreakerState } from './breaker.ts';

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

/**
 * `longhaul_webhook_endpoint_state{endpoint_id}`: 0 closed, 1 half-open, 2 open, 3 disabled (410), read
 * from the database at scrape time so any process serving /metrics shows every dispatcher's breakers.
 * Labelled by the endpoint's id (GET /v1/webhook-endpoints), not its URL, whose path may hold a credential.
 */
export function registerEndpointStateGauge(registry: Registry, db: Queryable): void {
  if (registry.getSingleMetric('longhaul_webhook_endpoint_state') !== undefined) return;
  new client.Gauge({
    name: 'longhaul_webhook_endpoint_state',
    help: 'Circuit breaker state per webhook endpoint (a tenant and URL): 0 closed, 1 half-open, 2 open, 3 disabled',
    labelNames: ['endpoint_id'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const e of await endpointStates(db))
        this.set({ endpoint_id: e.id }, STATE_VALUE[e.disabled ? 'disabled' : e.state]);
    },
  });
}
