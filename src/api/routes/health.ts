/** Liveness, readiness and metrics. */
import { createRoute } from '@hono/zod-openapi';
import { QUEUES } from '../../jobs/queues.ts';
import type { App, AppDeps } from '../context.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { ApiError } from '../errors.ts';
import { metricsAuthorized } from '../../observability/metrics.ts';
import { HealthSchema } from '../schemas.ts';

const healthz = createRoute({
  method: 'get',
  path: '/healthz',
  operationId: 'getHealth',
  tags: ['operations'],
  summary: 'The process is alive',
  responses: { 200: { description: 'Alive', ...jsonContent(HealthSchema) } },
});

const readyz = createRoute({
  method: 'get',
  path: '/readyz',
  operationId: 'getReadiness',
  tags: ['operations'],
  summary: 'The database and the queue are reachable',
  responses: {
    200: { description: 'Ready', ...jsonContent(HealthSchema) },
    503: { description: 'Not ready', ...jsonContent(HealthSchema) },
  },
});

/** A readiness check that takes longer than this counts as failed. */
const READY_TIMEOUT_MS = 2_000;

async function probe(check: () => Promise<boolean>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check().catch(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function registerHealthRoutes(app: App, deps: AppDeps, draining: () => boolean): void {
  const checks: Record<string, () => Promise<boolean>> = {
    database: async () => (await deps.pool.query('SELECT 1')).rowCount === 1,
    queue: async () => (await deps.boss.getQueue(QUEUES.jobs)) !== null,
    ...deps.readiness,
  };
  app.openapi(healthz, (c) => c.json({ status: 'ok' }, 200));
  app.openapi(readyz, async (c) => {
    const names = Object.keys(checks);
    const results = await Promise.all(names.map((n) => probe(checks[n] ?? (async () => false))));
    const out: Record<string, string> = {};
    names.forEach((n, i) => (out[n] = results[i] === true ? 'ok' : 'failing'));
    if (draining()) out.process = 'draining';
    const ready = results.every(Boolean) && !draining();
    return ready ? c.json({ status: 'ready', checks: out }, 200) : c.json({ status: 'not ready', checks: out }, 503);
  });
  // Served on a port of its own instead (src/api/metrics-server.ts) when the operator asks.
  if (deps.config.metrics.port !== undefined) return;
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/metrics',
    operationId: 'getMetrics',
    tags: ['operations'],
    summary: 'Prometheus metrics',
    description:
      'Requires `Authorization: Bearer <LONGHAUL_METRICS_TOKEN>` when that is set. Absent here when LONGHAUL_METRICS_PORT serves it on a port of its own.',
    responses: {
      200: {
        description: 'Metrics in the Prometheus text format',
        content: { 'text/plain': { schema: { type: 'string' } } },
      },
      ...errorResponses(401),
    },
  });
  app.get('/metrics', async (c) => {
    if (!metricsAuthorized(c.req.header('authorization'), deps.config.metrics.token))
      throw new ApiError('unauthorized', 'This /metrics requires its bearer token (LONGHAUL_METRICS_TOKEN).', {
        headers: { 'WWW-Authenticate': 'Bearer' },
      });
    c.header('Content-Type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });
}
