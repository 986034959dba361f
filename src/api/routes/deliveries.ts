/** A tenant's webhook deliveries, each with its attempt log: a job's, a page of all (the dead-letter queue with status=dead), one. */
import { createRoute, z } from '@hono/zod-openapi';
import { deliveryPage, findDelivery, jobDeliveries, type DeliveryWithAttempts } from '../../webhooks/deliveries.ts';
import type { DeliveryStatus } from '../../webhooks/store.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { isoOrNull, parseUuidParam } from '../route-helpers.ts';
import { JobIdParam, listQuery, PageQueryFields } from '../schemas.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { parseJobId } from './jobs.ts';

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

export const DeliverySchema = z
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

export const DeliveryIdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' } }) });
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

/** A path id that is not a UUID names no delivery: 404. */
export const parseDeliveryId = (id: string): string => parseUuidParam(id, 'delivery');

export function toDelivery({ delivery: d, attempts }: DeliveryWithAttempts) {
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
    delivered_at: isoOrNull(d.delivered_at),
    dead_at: isoOrNull(d.dead_at),
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

export function registerDeliveryRoutes(app: App, deps: AppDeps): void {
  const { pool } = deps;

  app.openapi(jobDeliveriesRoute, async (c) => {
    const id = parseJobId(c.req.valid('param').id);
    const deliveries = await jobDeliveries(pool, c.get('tenant').id, id);
    if (deliveries === undefined) throw new ApiError('not-found', `no job with id ${id}`);
    return c.json({ data: deliveries.map(toDelivery) }, 200);
  });

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const page = await deliveryPage(pool, c.get('tenant').id, {
      status: q.status === undefined ? undefined : (q.status.toUpperCase() as DeliveryStatus),
      since: q.since === undefined ? undefined : new Date(q.since),
      until: q.until === undefined ? undefined : new Date(q.until),
      limit: q.limit,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
    return c.json(
      { data: page.deliveries.map(toDelivery), next_cursor: page.next === null ? null : encodeCursor(page.next) },
      200,
    );
  });

  app.openapi(getRoute, async (c) => {
    const id = parseDeliveryId(c.req.valid('param').id);
    const found = await findDelivery(pool, c.get('tenant').id, id);
    if (found === undefined) throw new ApiError('not-found', `no delivery with id ${id}`);
    return c.json(toDelivery(found), 200);
  });
}
