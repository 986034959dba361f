/** The endpoints of a tenant's deliveries with their circuit breaker state, and enabling one that a 410 disabled. */
import { createRoute, z } from '@hono/zod-openapi';
import { enableEndpoint } from '../../webhooks/breaker.ts';
import { listTenantEndpoints, type EndpointRow } from '../../webhooks/endpoints.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { isoOrNull, parseUuidParam } from '../route-helpers.ts';
import { listQuery } from '../schemas.ts';

const EndpointSchema = z
  .object({
    id: z.string().uuid().openapi({ description: 'Names the endpoint in POST /v1/webhook-endpoints/{id}/enable' }),
    endpoint: z.string().openapi({
      description: "scheme://host:port/path (no query). Each tenant's endpoint has its own breaker and counters.",
    }),
    state: z.enum(['closed', 'open', 'half_open']),
    retry_at: z
      .string()
      .datetime()
      .nullable()
      .openapi({ description: 'Open: end of the cool-down. Half-open: end of the probe lease.' }),
    opened_at: z.string().datetime().nullable(),
    recent_total: z.number().int(),
    recent_failures: z.number().int(),
    successes: z.number().int(),
    failures: z.number().int(),
    last_success_at: z.string().datetime().nullable(),
    last_failure_at: z.string().datetime().nullable(),
    disabled_at: z.string().datetime().nullable().openapi({
      description:
        'When the endpoint answered 410 Gone, which disabled it: its deliveries wait (not dead, no attempts spent) until it is enabled again.',
    }),
    pending: z.number().int().openapi({ description: "This tenant's deliveries waiting for it" }),
  })
  .openapi('WebhookEndpoint');

const EndpointIdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' } }) });
function toEndpoint(e: EndpointRow) {
  return {
    id: e.id,
    endpoint: e.endpoint,
    state: e.state,
    retry_at: isoOrNull(e.retry_at),
    opened_at: isoOrNull(e.opened_at),
    recent_total: e.recent_total,
    recent_failures: e.recent_failures,
    successes: e.successes,
    failures: e.failures,
    last_success_at: isoOrNull(e.last_success_at),
    last_failure_at: isoOrNull(e.last_failure_at),
    disabled_at: isoOrNull(e.disabled_at),
    pending: e.pending,
  };
}

const security = [{ apiKey: [] }];

const endpointsRoute = createRoute({
  method: 'get',
  path: '/v1/webhook-endpoints',
  operationId: 'listWebhookEndpoints',
  tags: ['webhooks'],
  summary: "The endpoints of the tenant's deliveries with their circuit breaker state",
  security,
  request: { query: listQuery({}) },
  responses: {
    200: { description: 'Endpoints', ...jsonContent(z.object({ data: z.array(EndpointSchema) })) },
    ...errorResponses(400, 401),
  },
});

const enableEndpointRoute = createRoute({
  method: 'post',
  path: '/v1/webhook-endpoints/{id}/enable',
  operationId: 'enableWebhookEndpoint',
  tags: ['webhooks'],
  summary: 'Enable an endpoint that a 410 answer disabled',
  description:
    'Its breaker starts closed and its waiting deliveries are sent at once, each continuing its retry schedule. Enabling an endpoint that is not disabled changes nothing.',
  security,
  request: { params: EndpointIdParam },
  responses: { 200: { description: 'The endpoint', ...jsonContent(EndpointSchema) }, ...errorResponses(401, 404) },
});

export function registerWebhookEndpointRoutes(app: App, deps: AppDeps): void {
  const { pool } = deps;

  app.openapi(endpointsRoute, async (c) =>
    c.json({ data: (await listTenantEndpoints(pool, c.get('tenant').id)).map(toEndpoint) }, 200),
  );

  app.openapi(enableEndpointRoute, async (c) => {
    const raw = c.req.valid('param').id;
    const e = await enableEndpoint(pool, c.get('tenant').id, parseUuidParam(raw, 'webhook endpoint'));
    if (e === undefined) throw new ApiError('not-found', `no webhook endpoint with id ${raw}`);
    c.get('log').info({ endpoint_id: e.id }, 'webhook endpoint enabled');
    return c.json(toEndpoint(e), 200);
  });
}
