/** /v1/admin: tenant management, enabled only when LONGHAUL_ADMIN_TOKEN is set. */
import { createRoute } from '@hono/zod-openapi';
import { createTenant, TenantExistsError } from '../../tenants/repository.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { CreatedTenantSchema, CreateTenantSchema } from '../schemas.ts';

const createTenantRoute = createRoute({
  method: 'post',
  path: '/v1/admin/tenants',
  operationId: 'createTenant',
  tags: ['admin'],
  summary: 'Create a tenant',
  description: 'Returns the tenant with its first API key and webhook secret. Both are shown only here.',
  security: [{ adminToken: [] }],
  request: { body: { content: { 'application/json': { schema: CreateTenantSchema } }, required: true } },
  responses: {
    201: { description: 'Created', ...jsonContent(CreatedTenantSchema) },
    ...errorResponses(400, 401, 404, 409, 413, 415, 422),
  },
});

export function registerAdminRoutes(app: App, deps: AppDeps): void {
  app.on('POST', '/v1/admin/tenants', requireJsonBody());
  app.openapi(createTenantRoute, async (c) => {
    const { name } = c.req.valid('json');
    try {
      const tenant = await createTenant(deps.pool, name);
      c.get('log').info({ tenant_id: tenant.id, name }, 'tenant created');
      return c.json(tenant, 201);
    } catch (err) {
      if (err instanceof TenantExistsError) throw new ApiError('invalid-state', err.message);
      throw err;
    }
  });
}
