/**
 * Webhook deliveries and signing: a job's deliveries with their attempts, the dead-letter queue and its
 * replay, endpoint (circuit breaker) states, secret and key rotation, the signature scheme, the public
 * JWKS, and the `webhooks` section of the OpenAPI document (the events partners receive).
 */
import { createRoute, z } from '@hono/zod-openapi';
import { withTransaction } from '../../db/pool.ts';
import { getJob } from '../../jobs/repository.ts';
import { enableEndpoint, listTenantEndpoints, type EndpointRow } from '../../webhooks/breaker.ts';
import {
  activeSecrets,
  activeSigningKeys,
  publicJwks,
  rotateSecret,
  rotateSigningKey,
  setSignatureScheme,
  signatureScheme,
} from '../../webhooks/keys.ts';
import {
  attemptsOf,
  deliveriesOfJob,
  getDelivery,
  listDeliveries,
  redeliver,
  type AttemptRow,
  type DeliveryRow,
  type DeliveryStatus,
} from '../../webhooks/store.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { JobIdParam, JobSchema, listQuery, PageQueryFields } from '../schemas.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { parseJobId } from './jobs.ts';

/** Longest grace period a rotation may ask for (a week): older secrets must not linger indefinitely. */
const MAX_GRACE_SECONDS = 7 * 24 * 3600;

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

const DELIVERY_STATUSES = ['pending', 'succeeded', 'dead'] as const;
const toApiStatus = (s: DeliveryStatus) => s.toLowerCase() as (typeof DELIVERY_STATUSES)[number];

const AttemptSchema = z
  .object({
    n: z.number().int().openapi({ description: 'Attempt number, from 1 (replays continue the count)' }),
    started_at: z.string().datetime(),
    duration_ms: z.number().int(),
    status_code: z
      .number()
      .int()
      .nullable()
      .openapi({ description: 'HTTP status, null when no response came (timeout, network, refused)' }),
    error: z.string().nullable(),
    response: z.string().nullable().openapi({ description: 'Start of the response body, at most 4 KiB' }),
  })
  .openapi('DeliveryAttempt');

const DeliverySchema = z
  .object({
    id: z.string().uuid(),
    webhook_id: z.string().openapi({ description: 'The `webhook-id` header: the same on every attempt and replay' }),
    job_id: z.string().uuid(),
    event_type: z.enum(['job.completed', 'job.failed', 'job.cancelled']),
    url: z.string(),
    endpoint: z.string().openapi({
      description:
        'scheme://host:port/path of `url` (no query): with the tenant, the unit of the circuit breaker (GET /v1/webhook-endpoints)',
    }),
    status: z.enum(DELIVERY_STATUSES),
    attempt_count: z.number().int(),
    next_attempt_at: z.string().datetime().nullable().openapi({ description: 'When a pending delivery is tried next' }),
    last_status_code: z.number().int().nullable(),
    last_error: z.string().nullable(),
    created_at: z.string().datetime(),
    delivered_at: z.string().datetime().nullable(),
    dead_at: z.string().datetime().nullable(),
    attempts: z.array(AttemptSchema),
  })
  .openapi('Delivery');

const DeliveryListSchema = z
  .object({ data: z.array(DeliverySchema), next_cursor: z.string().nullable() })
  .openapi('DeliveryList');

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

const SecretSchema = z
  .object({
    id: z.string().uuid(),
    prefix: z.string(),
    created_at: z.string().datetime(),
    expires_at: z.string().datetime().nullable(),
  })
  .openapi('WebhookSecret');
export const NewSecretSchema = SecretSchema.extend({
  secret: z.string().openapi({ description: 'The new `whsec_` secret, shown only here' }),
}).openapi('NewWebhookSecret');

const JwkSchema = z
  .object({
    kty: z.literal('OKP'),
    crv: z.literal('Ed25519'),
    x: z.string().openapi({ description: 'The public key, base64url (RFC 8037)' }),
    kid: z.string().openapi({ description: 'The key id: its JWK thumbprint (RFC 7638)' }),
    alg: z.literal('EdDSA'),
    use: z.literal('sig'),
  })
  .openapi('Jwk', { description: 'An Ed25519 public key (kty OKP, crv Ed25519) with its kid' });
const SigningKeySchema = z
  .object({
    kid: z.string(),
    public_key: z.string().openapi({ description: '`whpk_` + base64 of the raw public key (Standard Webhooks form)' }),
    public_jwk: JwkSchema,
    created_at: z.string().datetime(),
    expires_at: z.string().datetime().nullable(),
  })
  .openapi('WebhookSigningKey');

const SettingsSchema = z
  .object({
    signature_scheme: z
      .enum(['v1', 'v1a'])
      .openapi({ description: 'v1: HMAC-SHA256 with the whsec_ secrets. v1a: Ed25519 with the keys below.' }),
    jwks_url: z.string(),
    secrets: z.array(SecretSchema),
    signing_keys: z.array(SigningKeySchema),
  })
  .openapi('WebhookSettings');

const PutSettingsSchema = z
  .object({ signature_scheme: z.enum(['v1', 'v1a']) })
  .strict()
  .openapi('PutWebhookSettings');

const RedeliverRangeSchema = z
  .object({
    since: z
      .string()
      .datetime({ offset: true })
      .optional()
      .openapi({ description: 'Only deliveries created at or after this time' }),
    until: z
      .string()
      .datetime({ offset: true })
      .optional()
      .openapi({ description: 'Only deliveries created before this time' }),
  })
  .strict()
  .openapi('RedeliverRange');

const RedeliveredSchema = z
  .object({ redelivered: z.number().int(), ids: z.array(z.string().uuid()) })
  .openapi('Redelivered');

const DeliveryIdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' } }) });
export const GraceQuery = z.object({
  grace_seconds: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_GRACE_SECONDS)
    .optional()
    .openapi({
      param: { name: 'grace_seconds', in: 'query' },
      description:
        'How long the previous secrets/keys keep signing (default LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS, 24 h; 0 revokes them now)',
    }),
});
const ListDeliveriesQuery = listQuery({
  status: z
    .enum(DELIVERY_STATUSES)
    .optional()
    .openapi({ param: { name: 'status', in: 'query' } }),
  since: z
    .string()
    .datetime({ offset: true })
    .optional()
    .openapi({ param: { name: 'since', in: 'query' }, description: 'Created at or after' }),
  until: z
    .string()
    .datetime({ offset: true })
    .optional()
    .openapi({ param: { name: 'until', in: 'query' }, description: 'Created before' }),
  ...PageQueryFields,
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function parseDeliveryId(id: string): string {
  if (!UUID.test(id)) throw new ApiError('not-found', `no delivery with id ${JSON.stringify(id.slice(0, 64))}`);
  return id.toLowerCase();
}

function toDelivery(d: DeliveryRow, attempts: AttemptRow[]) {
  return {
    id: d.id,
    webhook_id: d.webhook_id,
    job_id: d.job_id,
    event_type: d.event_type as 'job.completed' | 'job.failed' | 'job.cancelled',
    url: d.url,
    endpoint: d.endpoint,
    status: toApiStatus(d.status),
    attempt_count: d.attempts,
    next_attempt_at: d.status === 'PENDING' ? d.next_attempt_at.toISOString() : null,
    last_status_code: d.last_status_code,
    last_error: d.last_error,
    created_at: d.created_at.toISOString(),
    delivered_at: iso(d.delivered_at),
    dead_at: iso(d.dead_at),
    attempts: attempts.map((a) => ({
      n: a.n,
      started_at: a.started_at.toISOString(),
      duration_ms: a.duration_ms,
      status_code: a.status_code,
      error: a.error,
      response: a.response,
    })),
  };
}

function toEndpoint(e: EndpointRow) {
  return {
    id: e.id,
    endpoint: e.endpoint,
    state: e.state,
    retry_at: iso(e.retry_at),
    opened_at: iso(e.opened_at),
    recent_total: e.recent_total,
    recent_failures: e.recent_failures,
    successes: e.successes,
    failures: e.failures,
    last_success_at: iso(e.last_success_at),
    last_failure_at: iso(e.last_failure_at),
    disabled_at: iso(e.disabled_at),
    pending: e.pending,
  };
}

const security = [{ apiKey: [] }];

const jobDeliveriesRoute = createRoute({
  method: 'get',
  path: '/v1/jobs/{id}/deliveries',
  operationId: 'listJobDeliveries',
  tags: ['webhooks'],
  summary: "A job's webhook deliveries with every attempt",
  security,
  request: { params: JobIdParam, query: listQuery({}) },
  responses: {
    200: { description: 'The deliveries, oldest first', ...jsonContent(z.object({ data: z.array(DeliverySchema) })) },
    ...errorResponses(400, 401, 404),
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/v1/deliveries',
  operationId: 'listDeliveries',
  tags: ['webhooks'],
  summary: "List the tenant's deliveries (status=dead: the dead-letter queue)",
  description:
    'Newest first, keyset-paginated. `since`/`until` select on when the event happened (the delivery was created).',
  security,
  request: { query: ListDeliveriesQuery },
  responses: {
    200: { description: 'A page of deliveries', ...jsonContent(DeliveryListSchema) },
    ...errorResponses(400, 401, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/deliveries/{id}',
  operationId: 'getDelivery',
  tags: ['webhooks'],
  summary: 'Get a delivery with its attempts',
  security,
  request: { params: DeliveryIdParam },
  responses: { 200: { description: 'The delivery', ...jsonContent(DeliverySchema) }, ...errorResponses(401, 404) },
});

const redeliverOneRoute = createRoute({
  method: 'post',
  path: '/v1/deliveries/{id}/redeliver',
  operationId: 'redeliverDelivery',
  tags: ['webhooks'],
  summary: 'Replay a finished delivery',
  description:
    'Sends a DEAD (or succeeded) delivery again with the same `webhook-id` and a fresh retry schedule. A pending one answers 409.',
  security,
  request: { params: DeliveryIdParam },
  responses: {
    202: { description: 'Queued again', ...jsonContent(DeliverySchema) },
    ...errorResponses(400, 401, 404, 409, 413, 415, 422),
  },
});

const redeliverRangeRoute = createRoute({
  method: 'post',
  path: '/v1/deliveries/redeliver',
  operationId: 'redeliverDeliveries',
  tags: ['webhooks'],
  summary: 'Replay every DEAD delivery in a time range',
  security,
  request: { body: { content: { 'application/json': { schema: RedeliverRangeSchema } }, required: true } },
  responses: {
    202: { description: 'Queued again', ...jsonContent(RedeliveredSchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

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
  request: { params: DeliveryIdParam },
  responses: { 200: { description: 'The endpoint', ...jsonContent(EndpointSchema) }, ...errorResponses(401, 404) },
});

const settingsRoute = createRoute({
  method: 'get',
  path: '/v1/webhook-settings',
  operationId: 'getWebhookSettings',
  tags: ['webhooks'],
  summary: 'Signature scheme, active secrets and signing keys',
  security,
  responses: { 200: { description: 'Settings', ...jsonContent(SettingsSchema) }, ...errorResponses(401) },
});

const putSettingsRoute = createRoute({
  method: 'put',
  path: '/v1/webhook-settings',
  operationId: 'updateWebhookSettings',
  tags: ['webhooks'],
  summary: 'Choose the signature scheme (v1 HMAC or v1a Ed25519)',
  description:
    'Choosing v1a creates an Ed25519 key if the tenant has none; its public key is published in /.well-known/jwks.json.',
  security,
  request: { body: { content: { 'application/json': { schema: PutSettingsSchema } }, required: true } },
  responses: {
    200: { description: 'Settings', ...jsonContent(SettingsSchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const rotateSecretRoute = createRoute({
  method: 'post',
  path: '/v1/webhook-secrets',
  operationId: 'rotateWebhookSecret',
  tags: ['webhooks'],
  summary: 'Add a new v1 secret (rotation)',
  description:
    'The previous secrets keep signing for the grace period, so every delivery meanwhile carries one v1 signature per active secret.',
  security,
  request: { query: GraceQuery },
  responses: {
    201: { description: 'The new secret, shown once', ...jsonContent(NewSecretSchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const rotateKeyRoute = createRoute({
  method: 'post',
  path: '/v1/webhook-signing-keys',
  operationId: 'rotateWebhookSigningKey',
  tags: ['webhooks'],
  summary: 'Add a new v1a Ed25519 signing key (rotation)',
  security,
  request: { query: GraceQuery },
  responses: {
    201: { description: 'The new key (public part)', ...jsonContent(SigningKeySchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const jwksRoute = createRoute({
  method: 'get',
  path: '/.well-known/jwks.json',
  operationId: 'getJwks',
  tags: ['webhooks'],
  summary: 'Public keys that verify v1a webhook signatures',
  responses: {
    200: {
      description: 'A JWKS of Ed25519 keys, each with its kid',
      ...jsonContent(z.object({ keys: z.array(JwkSchema) }).openapi('Jwks')),
    },
  },
});

const WebhookHeaders = z.object({
  'webhook-id': z.string().openapi({
    description: 'Message id, the same on every attempt and replay: dedupe on it',
    example: 'msg_2b7f0c1e9d4a4c33a1f0e8d6b5c4a321',
  }),
  'webhook-timestamp': z
    .string()
    .openapi({ description: 'Unix seconds of this attempt; reject values far from now', example: '1735689600' }),
  'webhook-signature': z.string().openapi({
    description:
      'Space-separated `v1,<base64 HMAC-SHA256>` (or `v1a,<base64 Ed25519>`) entries over `id.timestamp.body`, one per active secret/key',
    example: 'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=',
  }),
});

/** Documents the events partners receive, under the OpenAPI `webhooks` section. */
function registerWebhookEvents(app: App): void {
  const events = [
    ['job.completed', 'The job finished: `data.result` holds its result.'],
    ['job.failed', 'The job failed for good: `data.error` holds the last error.'],
    ['job.cancelled', 'The job was cancelled.'],
  ] as const;
  for (const [type, what] of events) {
    const schema = z
      .object({
        type: z.literal(type),
        timestamp: z.string().datetime().openapi({ description: 'When the job reached its terminal state' }),
        data: JobSchema.openapi({ description: 'The job as GET /v1/jobs/{id} returns it' }),
      })
      .openapi(`Event_${type.replace('.', '_')}`);
    app.openAPIRegistry.registerWebhook({
      method: 'post',
      path: type,
      tags: ['webhooks'],
      summary: `${type} event`,
      description: `${what} Sent at least once to the job's callback_url, signed per Standard Webhooks; retried with backoff for about 27 h on failure.`,
      request: { headers: WebhookHeaders, body: { content: { 'application/json': { schema } }, required: true } },
      responses: {
        200: { description: 'Any 2xx acknowledges the event' },
        410: {
          description:
            "Stop: the tenant's endpoint is disabled and its deliveries wait until it is enabled (POST /v1/webhook-endpoints/{id}/enable)",
        },
      },
    });
  }
}

export function registerDeliveryRoutes(app: App, deps: AppDeps): void {
  const { pool, config } = deps;
  const grace = (q: { grace_seconds?: number | undefined }) => q.grace_seconds ?? config.webhooks.secretGraceSeconds;
  registerWebhookEvents(app);
  app.on('POST', '/v1/deliveries/redeliver', requireJsonBody());
  app.on('PUT', '/v1/webhook-settings', requireJsonBody());

  const withAttempts = async (rows: DeliveryRow[]) => {
    const attempts = await attemptsOf(
      pool,
      rows.map((r) => r.id),
    );
    return rows.map((r) => toDelivery(r, attempts.get(r.id) ?? []));
  };
  const settings = async (tenantId: string) => ({
    signature_scheme: await signatureScheme(pool, tenantId),
    jwks_url: `${config.publicUrl}/.well-known/jwks.json`,
    secrets: (await activeSecrets(pool, tenantId)).map((s) => ({
      id: s.id,
      prefix: s.prefix,
      created_at: s.created_at.toISOString(),
      expires_at: iso(s.expires_at),
    })),
    signing_keys: (await activeSigningKeys(pool, tenantId)).map((k) => ({
      ...k,
      created_at: k.created_at.toISOString(),
      expires_at: iso(k.expires_at),
    })),
  });

  app.openapi(jobDeliveriesRoute, async (c) => {
    const tenantId = c.get('tenant').id;
    const id = parseJobId(c.req.valid('param').id);
    if ((await getJob(pool, tenantId, id)) === undefined) throw new ApiError('not-found', `no job with id ${id}`);
    return c.json({ data: await withAttempts(await deliveriesOfJob(pool, tenantId, id)) }, 200);
  });

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const page = await listDeliveries(pool, c.get('tenant').id, {
      status: q.status === undefined ? undefined : (q.status.toUpperCase() as DeliveryStatus),
      since: q.since === undefined ? undefined : new Date(q.since),
      until: q.until === undefined ? undefined : new Date(q.until),
      limit: q.limit,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
    return c.json(
      { data: await withAttempts(page.rows), next_cursor: page.next === null ? null : encodeCursor(page.next) },
      200,
    );
  });

  app.openapi(getRoute, async (c) => {
    const id = parseDeliveryId(c.req.valid('param').id);
    const d = await getDelivery(pool, c.get('tenant').id, id);
    if (d === undefined) throw new ApiError('not-found', `no delivery with id ${id}`);
    const [out] = await withAttempts([d]);
    return c.json(out ?? toDelivery(d, []), 200);
  });

  app.openapi(redeliverOneRoute, async (c) => {
    const tenantId = c.get('tenant').id;
    const id = parseDeliveryId(c.req.valid('param').id);
    const done = await redeliver(pool, tenantId, { ids: [id] });
    const d = await getDelivery(pool, tenantId, id);
    if (d === undefined) throw new ApiError('not-found', `no delivery with id ${id}`);
    if (done.length === 0)
      throw new ApiError('invalid-state', 'the delivery is still pending; only finished deliveries can be redelivered');
    const [out] = await withAttempts([d]);
    return c.json(out ?? toDelivery(d, []), 202);
  });

  app.openapi(redeliverRangeRoute, async (c) => {
    const body = c.req.valid('json');
    const since = body.since === undefined ? undefined : new Date(body.since);
    const until = body.until === undefined ? undefined : new Date(body.until);
    if (since !== undefined && until !== undefined && since >= until) {
      throw new ApiError('validation-error', 'since must be before until', {
        errors: [{ field: 'until', message: 'must be after since' }],
      });
    }
    const ids = await redeliver(pool, c.get('tenant').id, { since, until });
    c.get('log').info({ redelivered: ids.length }, 'dead deliveries replayed');
    return c.json({ redelivered: ids.length, ids }, 202);
  });

  app.openapi(endpointsRoute, async (c) =>
    c.json({ data: (await listTenantEndpoints(pool, c.get('tenant').id)).map(toEndpoint) }, 200),
  );

  app.openapi(enableEndpointRoute, async (c) => {
    const raw = c.req.valid('param').id;
    if (!UUID.test(raw))
      throw new ApiError('not-found', `no webhook endpoint with id ${JSON.stringify(raw.slice(0, 64))}`);
    const e = await enableEndpoint(pool, c.get('tenant').id, raw.toLowerCase());
    if (e === undefined) throw new ApiError('not-found', `no webhook endpoint with id ${raw}`);
    c.get('log').info({ endpoint_id: e.id }, 'webhook endpoint enabled');
    return c.json(toEndpoint(e), 200);
  });

  app.openapi(settingsRoute, async (c) => c.json(await settings(c.get('tenant').id), 200));

  app.openapi(putSettingsRoute, async (c) => {
    const tenantId = c.get('tenant').id;
    const { signature_scheme } = c.req.valid('json');
    await withTransaction(pool, (client) => setSignatureScheme(client, tenantId, signature_scheme));
    return c.json(await settings(tenantId), 200);
  });

  app.openapi(rotateSecretRoute, async (c) => {
    const s = await rotateSecret(pool, c.get('tenant').id, grace(c.req.valid('query')));
    c.get('log').info({ secret_id: s.id }, 'webhook secret rotated');
    return c.json(
      { id: s.id, prefix: s.prefix, secret: s.secret, created_at: s.created_at.toISOString(), expires_at: null },
      201,
    );
  });

  app.openapi(rotateKeyRoute, async (c) => {
    const k = await rotateSigningKey(pool, c.get('tenant').id, grace(c.req.valid('query')));
    c.get('log').info({ kid: k.kid }, 'webhook signing key rotated');
    return c.json({ ...k, created_at: k.created_at.toISOString(), expires_at: null }, 201);
  });

  app.openapi(jwksRoute, async (c) => {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(await publicJwks(pool), 200);
  });
}
