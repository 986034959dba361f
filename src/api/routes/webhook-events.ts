/** The `webhooks` section of the OpenAPI document: the signed events partners receive at their callback URL. */
import { z } from '@hono/zod-openapi';
import type { App } from '../context.ts';
import { JobSchema } from '../schemas.ts';

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
export function registerWebhookEventDocs(app: App): void {
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
