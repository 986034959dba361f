/** /v1/admin/tenants/{id}/limits: a tenant's running, pending and submission-rate limits (src/tenants/limits.ts). */
import { createRoute } from '@hono/zod-openapi';
import { getLimits, setLimits, type TenantLimits } from '../../tenants/limits.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { parseUuidParam } from '../route-helpers.ts';
import { TenantIdParam, TenantLimitsPatchSchema, TenantLimitsSchema } from '../schemas.ts';

const getLimitsRoute = createRoute({
  method: 'get',
  path: '/v1/admin/tenants/{id}/limits',
  operationId: 'getTenantLimits',
  tags: ['admin'],
  summary: "Get a tenant's limits",
  security: [{ adminToken: [] }],
  request: { params: TenantIdParam },
  responses: {
    200: { description: "The tenant's limits (null: none set)", ...jsonContent(TenantLimitsSchema) },
    ...errorResponses(401, 404),
  },
});

const patchLimitsRoute = createRoute({
  method: 'patch',
  path: '/v1/admin/tenants/{id}/limits',
  operationId: 'updateTenantLimits',
  tags: ['admin'],
  summary: "Change a tenant's limits",
  description:
    'Past `max_pending_jobs` or `submission_rate`, `POST /v1/jobs` answers 429 with Retry-After and the RateLimit headers, and writes nothing. A changed limit applies at once on the process that changed it and within LONGHAUL_AUTH_CACHE_SECONDS on the others. `max_running_jobs` is enforced by the workers.',
  security: [{ adminToken: [] }],
  request: {
    params: TenantIdParam,
    body: { content: { 'application/json': { schema: TenantLimitsPatchSchema } }, required: true },
  },
  responses: {
    200: { description: "The tenant's limits after the change", ...jsonContent(TenantLimitsSchema) },
    ...errorResponses(400, 401, 404, 413, 415, 422),
  },
});

function toResource(l: TenantLimits) {
  return { ...l, updated_at: l.updated_at === null ? null : l.updated_at.toISOString() };
}

export function registerTenantLimitRoutes(app: App, deps: AppDeps): void {
  app.openapi(getLimitsRoute, async (c) => {
    const id = parseUuidParam(c.req.valid('param').id, 'tenant');
    const limits = await getLimits(deps.pool, id);
    if (limits === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    return c.json(toResource(limits), 200);
  });

  app.on('PATCH', '/v1/admin/tenants/:id/limits', requireJsonBody());
  app.openapi(patchLimitsRoute, async (c) => {
    const id = parseUuidParam(c.req.valid('param').id, 'tenant');
    const limits = await setLimits(deps.pool, id, c.req.valid('json'));
    if (limits === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    await deps.limitedTenants?.refresh();
    c.get('log').info({ tenant_id: id, limits: c.req.valid('json') }, 'tenant limits changed');
    return c.json(toResource(limits), 200);
  });
}
