/** Replays from the dead-letter queue: one finished delivery, or every DEAD one of a time range. */
import { createRoute, z } from '@hono/zod-openapi';
import { replayDelivery } from '../../webhooks/deliveries.ts';
import { redeliver } from '../../webhooks/store.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { DeliveryIdParam, DeliverySchema, parseDeliveryId, toDelivery } from './deliveries.ts';

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

const security = [{ apiKey: [] }];

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

export function registerDeliveryReplayRoutes(app: App, deps: AppDeps): void {
  const { pool } = deps;
  app.on('POST', '/v1/deliveries/redeliver', requireJsonBody());

  app.openapi(redeliverOneRoute, async (c) => {
    const id = parseDeliveryId(c.req.valid('param').id);
    const replay = await replayDelivery(pool, c.get('tenant').id, id);
    if (replay.outcome === 'no-such-delivery') throw new ApiError('not-found', `no delivery with id ${id}`);
    if (replay.outcome === 'still-pending')
      throw new ApiError('invalid-state', 'the delivery is still pending; only finished deliveries can be redelivered');
    return c.json(toDelivery(replay.delivery), 202);
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
}
