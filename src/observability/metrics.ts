/** Prometheus metrics (prom-client), one registry per service instance, served at GET /metrics. */
import { createHash, timingSafeEqual } from 'node:crypto';
import client from 'prom-client';

export type Registry = client.Registry;

export function createMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpRequests: new client.Counter({
      name: 'longhaul_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new client.Histogram({
      name: 'longhaul_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    jobsSubmitted: new client.Counter({
      name: 'longhaul_jobs_submitted_total',
      help: 'Jobs accepted through POST /v1/jobs',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The metric `name` of `registry`, created by `make` unless a module registered it before. */
export function registeredOnce<T extends client.Metric>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/**
 * `read` shared by the gauges of one scrape: prom-client collects every gauge at once, so those that
 * show parts of one database read await the same call instead of each making it.
 */
export function sharedRead<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () =>
    (pending ??= read().finally(() => {
      pending = undefined;
    }));
}

/**
 * A gauge whose value is read (from the database) at each scrape and shown by `show`. A read that fails
 * leaves the gauge without series and counts in `longhaul_metrics_read_errors_total`: the rest of the
 * scrape, the process's own counters, is still served.
 */
export function readGauge<L extends string, T>(
  registry: Registry,
  opts: {
    name: string;
    help: string;
    labelNames?: readonly L[];
    read: () => Promise<T>;
    show: (gauge: client.Gauge<L>, value: T) => void;
  },
): void {
  if (registry.getSingleMetric(opts.name) !== undefined) return;
  const errors = registeredOnce(
    registry,
    'longhaul_metrics_read_errors_total',
    () =>
      new client.Counter({
        name: 'longhaul_metrics_read_errors_total',
        help: 'Scrape-time reads of a gauge that failed (the gauge was left without series), by gauge',
        labelNames: ['metric'] as const,
        registers: [registry],
      }),
  );
  new client.Gauge<L>({
    name: opts.name,
    help: opts.help,
    labelNames: opts.labelNames ?? [],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        opts.show(this, await opts.read());
      } catch {
        errors.inc({ metric: opts.name });
      }
    },
  });
}

/** Whether an `Authorization` header carries `token` as its bearer (compared in constant time); true when no token is set. */
export function metricsAuthorized(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (given === undefined) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(token));
}
