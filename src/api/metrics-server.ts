/**
 * `/metrics` on a port of its own (LONGHAUL_METRICS_PORT), in any role: a worker process has no other
 * HTTP server, and an operator can keep the port off the API's network path. `/healthz` beside it
 * serves as the worker's liveness probe.
 */
import { createServer } from 'node:http';
import type { Logger } from '../observability/logger.ts';
import { metricsAuthorized, type Registry } from '../observability/metrics.ts';
import { ERROR_CODES, PROBLEM_BASE, type ErrorCode } from './errors.ts';

export interface MetricsServer {
  url: string;
  stop(): Promise<void>;
}

export async function startMetricsServer(opts: {
  registry: Registry;
  token: string | undefined;
  port: number;
  host: string;
  log: Logger;
}): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const problem = (code: ErrorCode) => {
      const { status, title } = ERROR_CODES[code];
      res.writeHead(status, {
        'content-type': 'application/problem+json',
        ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
      });
      res.end(JSON.stringify({ type: PROBLEM_BASE + code, title, status }));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return problem('method-not-allowed');
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ status: 'ok' }));
    }
    if (path !== '/metrics') return problem('not-found');
    if (!metricsAuthorized(req.headers.authorization, opts.token)) return problem('unauthorized');
    opts.registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'content-type': opts.registry.contentType });
        res.end(body);
      },
      (err: unknown) => {
        opts.log.error({ err }, 'metrics: collecting failed');
        problem('internal');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  const url = `http://${opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host}:${port}`;
  opts.log.info({ url }, 'metrics listening');
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
