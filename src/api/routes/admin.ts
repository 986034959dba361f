/**
 * /v1/admin: tenants, their API keys and webhook secrets, enabled only when LONGHAUL_ADMIN_TOKEN is set.
 * The console's tenants page does the same operations through the same domain functions.
 */
import { createRoute, z } from '@hono/zod-openapi';
import {
  createApiKey,
  createTenant,
  listApiKeys,
  listTenants,
  NoSuchTenantError,
  rotateSecret,
  revokeApiKey,
  TenantExistsError,
  type ApiKeyInfo,
  type Tenant,
} from '../../tenants/repository.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { isoOrNull, parseUuidParam } from '../route-helpers.ts';
import { CreatedTenantSchema, CreateTenantSchema } from '../schemas.ts';
import { GraceQuery, NewSecretSchema } from './webhook-signing.ts';

const security = [{ adminToken: [] }];
const TenantSchema = z
  .object({ id: z.string().uuid(), name: z.string(), created_at: z.string().datetime() })
  .openapi('Tenant');

const ApiKeySchema = z
  .object({
    id: z.string().uuid(),
    tenant_id: z.string().uuid(),
    name: z.string().openapi({ description: 'What the key is for' }),
    prefix: z.string().openapi({ description: "The key's first characters, to tell keys apart" }),
    created_at: z.string().datetime(),
    last_used_at: z.string().datetime().nullable().openapi({
      description: 'Last authenticated use, recorded at most once a minute per API process',
    }),
    revoked_at: z.string().datetime().nullable().openapi({
      description: 'When it was revoked: every API process refuses it within LONGHAUL_AUTH_CACHE_SECONDS',
    }),
  })
  .openapi('ApiKey');

const CreatedApiKeySchema = ApiKeySchema.extend({
  api_key: z.string().openapi({ description: 'The key, shown only here; only its hash is stored' }),
}).openapi('CreatedApiKey');

const CreateApiKeySchema = z
  .object({ name: z.string().trim().min(1).max(200).openapi({ description: 'What the key is for', example: 'ci' }) })
  .strict()
  .openapi('CreateApiKey');

const TenantIdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' } }) });
const KeyParams = TenantIdParam.extend({ key: z.string().openapi({ param: { name: 'key', in: 'path' } }) });

const createTenantRoute = createRoute({
  method: 'post',
  path: '/v1/admin/tenants',
  operationId: 'createTenant',
  tags: ['admin'],
  summary: 'Create a tenant',
  description: 'Returns the tenant with its first API key and webhook secret. Both are shown only here.',
  security,
  request: { body: { content: { 'application/json': { schema: CreateTenantSchema } }, required: true } },
  responses: {
    201: { description: 'Created', ...jsonContent(CreatedTenantSchema) },
    ...errorResponses(400, 401, 404, 409, 413, 415, 422),
  },
});

const listTenantsRoute = createRoute({
  method: 'get',
  path: '/v1/admin/tenants',
  operationId: 'listTenants',
  tags: ['admin'],
  summary: 'List every tenant, oldest first',
  security,
  responses: {
    200: { description: 'Tenants', ...jsonContent(z.object({ data: z.array(TenantSchema) }).openapi('TenantList')) },
    ...errorResponses(401, 404),
  },
});

const listKeysRoute = createRoute({
  method: 'get',
  path: '/v1/admin/tenants/{id}/api-keys',
  operationId: 'listApiKeys',
  tags: ['admin'],
  summary: "A tenant's API keys, revoked ones included, newest first",
  security,
  request: { params: TenantIdParam },
  responses: {
    200: { description: 'API keys', ...jsonContent(z.object({ data: z.array(ApiKeySchema) }).openapi('ApiKeyList')) },
    ...errorResponses(401, 404),
  },
});

const createKeyRoute = createRoute({
  method: 'post',
  path: '/v1/admin/tenants/{id}/api-keys',
  operationId: 'createApiKey',
  tags: ['admin'],
  summary: 'Add a named API key to a tenant',
  description: 'The key is returned only here. The tenant keeps its other keys.',
  security,
  request: {
    params: TenantIdParam,
    body: { content: { 'application/json': { schema: CreateApiKeySchema } }, required: true },
  },
  responses: {
    201: { description: 'The new key, shown once', ...jsonContent(CreatedApiKeySchema) },
    ...errorResponses(400, 401, 404, 413, 415, 422),
  },
});

const revokeKeyRoute = createRoute({
  method: 'post',
  path: '/v1/admin/tenants/{id}/api-keys/{key}/revoke',
  operationId: 'revokeApiKey',
  tags: ['admin'],
  summary: 'Revoke an API key',
  description:
    'Every API process refuses the key within LONGHAUL_AUTH_CACHE_SECONDS, and console sessions opened with it end. Revoking a revoked key changes nothing.',
  security,
  request: { params: KeyParams },
  responses: {
    200: { description: 'The revoked key', ...jsonContent(ApiKeySchema) },
    ...errorResponses(400, 401, 404, 413, 415, 422),
  },
});

const rotateSecretRoute = createRoute({
  method: 'post',
  path: '/v1/admin/tenants/{id}/webhook-secrets',
  operationId: 'rotateTenantWebhookSecret',
  tags: ['admin'],
  summary: "Add a new v1 webhook secret to a tenant (rotation), as the tenant's POST /v1/webhook-secrets does",
  security,
  request: { params: TenantIdParam, query: GraceQuery },
  responses: {
    201: { description: 'The new secret, shown once', ...jsonContent(NewSecretSchema) },
    ...errorResponses(400, 401, 404, 413, 415, 422),
  },
});

const toTenant = (t: Tenant) => ({ id: t.id, name: t.name, created_at: t.created_at.toISOString() });
const toKey = (k: ApiKeyInfo) => ({
  ...k,
  created_at: k.created_at.toISOString(),
  last_used_at: isoOrNull(k.last_used_at),
  revoked_at: isoOrNull(k.revoked_at),
});

export function registerAdminRoutes(app: App, deps: AppDeps): void {
  const { pool, config } = deps;
  app.on('POST', ['/v1/admin/tenants', '/v1/admin/tenants/:id/api-keys'], requireJsonBody());

  app.openapi(createTenantRoute, async (c) => {
    const { name } = c.req.valid('json');
    try {
      const tenant = await createTenant(pool, name);
      c.get('log').info({ tenant_id: tenant.id, name }, 'tenant created');
      return c.json(tenant, 201);
    } catch (err) {
      if (err instanceof TenantExistsError) throw new ApiError('invalid-state', err.message);
      throw err;
    }
  });

  app.openapi(listTenantsRoute, async (c) => c.json({ data: (await listTenants(pool)).map(toTenant) }, 200));

  app.openapi(listKeysRoute, async (c) => {
    const id = parseUuidParam(c.req.valid('param').id, 'tenant');
    const keys = await listApiKeys(pool, id);
    if (keys === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    return c.json({ data: keys.map(toKey) }, 200);
  });

  app.openapi(createKeyRoute, async (c) => {
    const id = parseUuidParam(c.req.valid('param').id, 'tenant');
    const created = await createApiKey(pool, id, c.req.valid('json').name);
    if (created === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    c.get('log').info({ tenant_id: id, key_id: created.key.id }, 'API key created');
    return c.json({ ...toKey(created.key), api_key: created.apiKey }, 201);
  });

  app.openapi(revokeKeyRoute, async (c) => {
    const params = c.req.valid('param');
    const id = parseUuidParam(params.id, 'tenant');
    const keyId = parseUuidParam(params.key, 'API key');
    const key = await revokeApiKey(pool, id, keyId);
    if (key === undefined) throw new ApiError('not-found', `tenant ${id} has no API key with id ${keyId}`);
    c.get('log').info({ tenant_id: id, key_id: keyId }, 'API key revoked');
    return c.json(toKey(key), 200);
  });

  app.openapi(rotateSecretRoute, async (c) => {
    const id = parseUuidParam(c.req.valid('param').id, 'tenant');
    try {
      const grace = c.req.valid('query').grace_seconds ?? config.webhooks.secretGraceSeconds;
      const s = await rotateSecret(pool, id, grace);
      c.get('log').info({ tenant_id: id, secret_id: s.id }, 'webhook secret rotated');
      return c.json({ ...s, created_at: s.created_at.toISOString(), expires_at: null }, 201);
    } catch (err) {
      if (err instanceof NoSuchTenantError) throw new ApiError('not-found', err.message);
      throw err;
    }
  });
}
