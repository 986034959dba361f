/**
 * What the API answers while the service starts and its database has not answered yet: alive (/healthz
 * 200), not ready (/readyz 503 naming the database), and 503 with Retry-After for everything else, so a
 * load balancer keeps traffic away and a client retries. The full app takes over once started.
 */
import { Hono } from 'hono';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { AppEnv } from './context.ts';
import { databaseUnavailable, problemOf } from './errors.ts';
import { requestContext } from './middleware.ts';

export function createStartingApp(log: Logger, metrics: Metrics): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use('*', requestContext(log, metrics));
  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200));
  app.get('/readyz', (c) => c.json({ status: 'not ready', checks: { database: 'failing', process: 'starting' } }, 503));
  app.all('*', (c) => {
    const err = databaseUnavailable();
    return c.body(JSON.stringify(problemOf(err, c.get('requestId'), c.req.path)), 503, {
      'Content-Type': 'application/problem+json',
      ...err.headers,
    });
  });
  return app;
}
