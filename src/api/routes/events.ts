/**
 * GET /v1/jobs/{id}/events (live progress over SSE or WebSocket), POST /v1/jobs/{id}/stream-token (a
 * short-lived token for browsers, which cannot set headers on a WebSocket or an EventSource), and the
 * browser example page. The streaming itself is src/realtime's.
 */
import { readFileSync } from 'node:fs';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { UpgradeWebSocket } from 'hono/ws';
import { getJob } from '../../jobs/repository.ts';
import { isTerminal } from '../../jobs/state.ts';
import { progressUpTo, readSnapshot, snapshotMessage } from '../../realtime/events.ts';
import { COALESCE_LAG, type RealtimeHub, type SubscribeOptions } from '../../realtime/hub.ts';
import { SseSink, WebSocketSink, type NodeResponseLike, type RawWebSocket } from '../../realtime/sinks.ts';
import type { Tenant } from '../../tenants/repository.ts';
import type { App, AppDeps, AppEnv } from '../context.ts';
import { ApiError, fieldErrors } from '../errors.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { JobIdParam, JobSchema } from '../schemas.ts';
import { TokenError } from '../../tokens/signer.ts';
import { parseJobId } from './jobs.ts';

const EVENTS_PATH = /^\/v1\/jobs\/[^/]+\/events$/;

/**
 * True for a request to the events endpoint that carries a stream token and no Authorization header:
 * the API-key middleware lets it through and the route verifies the token itself.
 */
export function usesStreamToken(c: Context<AppEnv>): boolean {
  return (
    c.req.method === 'GET' &&
    c.req.header('authorization') === undefined &&
    c.req.query('token') !== undefined &&
    EVENTS_PATH.test(c.req.path)
  );
}

const at = z.string().datetime().openapi({ description: 'When the event was committed' });

export const StreamMessageSchema = z
  .discriminatedUnion('type', [
    z
      .object({ type: z.literal('snapshot'), seq: z.number().int(), job: JobSchema })
      .openapi('StreamSnapshot', { description: 'First message of a new stream: the job as it is at sequence `seq`.' }),
    z
      .object({
        type: z.literal('progress'),
        seq: z.number().int(),
        job_id: z.string().uuid(),
        processed: z.number().int(),
        total: z.number().int().nullable(),
        percent: z.number().nullable(),
        at,
      })
      .openapi('StreamProgress', {
        description:
          "The job's progress at a committed checkpoint, the newest when several committed since the stream's last read. `processed` and `percent` never decrease within a stream, even across retries.",
      }),
    z
      .object({
        type: z.literal('status'),
        seq: z.number().int(),
        job_id: z.string().uuid(),
        status: JobSchema.shape.status,
        attempts: z.number().int(),
        error: z.unknown(),
        result: z.unknown(),
        at,
      })
      .openapi('StreamStatus', {
        description: 'A change of status. The stream ends after COMPLETED, FAILED or CANCELLED.',
      }),
  ])
  .openapi('StreamMessage', {
    description:
      'One message of a job event stream: the `data` of an SSE event (whose `event` is `type` and `id` is `seq`), or one WebSocket text message.',
  });

const StreamTokenSchema = z
  .object({
    token: z
      .string()
      .openapi({ description: 'A JWT for the `token` query parameter of the events endpoint, for this job only' }),
    expires_at: z.string().datetime(),
    events_url: z.string().openapi({ description: 'The events URL with the token, for `EventSource`' }),
    websocket_url: z.string().openapi({ description: 'The same as a `ws:`/`wss:` URL, for `WebSocket`' }),
  })
  .openapi('StreamToken');

const EventsQuery = z.object({
  after: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .openapi({
      param: { name: 'after', in: 'query' },
      description: 'Resume: send the events after this sequence number (what a WebSocket client passes on reconnect).',
    }),
  token: z
    .string()
    .max(4096)
    .optional()
    .openapi({
      param: { name: 'token', in: 'query' },
      description: 'A stream token from `POST /v1/jobs/{id}/stream-token`, instead of the Authorization header.',
    }),
});

const EventsHeaders = z.object({
  'last-event-id': z
    .string()
    .regex(/^\d{1,15}$/, 'must be a sequence number this stream sent')
    .optional()
    .openapi({
      param: { in: 'header' },
      description:
        'The `Last-Event-ID` header that EventSource sends on reconnect: resume after this sequence number (wins over `after`).',
    }),
});

const STREAM_DESCRIPTION = `Live progress and status of a job.

- **Server-Sent Events**: send \`Accept: text/event-stream\`. Each event's \`event\` is the message type, its \`id\` the sequence number and its \`data\` a \`StreamMessage\`.
- **WebSocket**: send \`Upgrade: websocket\` (101). Each text message is a \`StreamMessage\`.

A new stream starts with a \`snapshot\` of the job, then sends a \`progress\` message as checkpoints commit (the newest one when several committed since the stream's last read) and one \`status\` message per change of status, and ends after COMPLETED, FAILED or CANCELLED (WebSocket close code 1000). Every checkpoint and status change takes the job's next sequence number; a superseded progress is not sent, so sequence numbers may skip. To resume after a disconnect, send \`Last-Event-ID\` (EventSource does it by itself) or \`?after=N\`: the stream continues with every status change after N and the newest progress after N, then live ones. A finished job whose last event the client has seen answers 204 (SSE), so EventSource stops reconnecting.

A client more than ${COALESCE_LAG} events behind (it reads too slowly) receives every status event but only the newest progress: sequence numbers then skip the superseded progress events. Streams are pinged every LONGHAUL_STREAM_PING_SECONDS (SSE comment lines, WebSocket pings): a WebSocket that leaves a ping unanswered until the next, or a stream whose writes make no progress for two intervals, is closed.

Authenticate with the API key header, or — from a browser, which cannot set headers on a WebSocket or an EventSource — with \`?token=\` from \`POST /v1/jobs/{id}/stream-token\`.`;

const eventsRoute = createRoute({
  method: 'get',
  path: '/v1/jobs/{id}/events',
  operationId: 'streamJobEvents',
  tags: ['jobs'],
  summary: 'Stream a job\u2019s progress and status (SSE or WebSocket)',
  description: STREAM_DESCRIPTION,
  security: [{ apiKey: [] }, { streamToken: [] }],
  request: { params: JobIdParam, query: EventsQuery, headers: EventsHeaders },
  responses: {
    101: {
      description:
        'Switching to the WebSocket protocol (with `Upgrade: websocket`); each text message is a `StreamMessage`.',
    },
    200: {
      description: 'An event stream (with `Accept: text/event-stream`); each event\u2019s data is a `StreamMessage`.',
      content: {
        'text/event-stream': {
          // Each event's data: generators type the stream's messages by this schema.
          schema: StreamMessageSchema,
        },
      },
    },
    204: { description: 'The job has finished and the client has seen its last event: nothing more will come.' },
    ...errorResponses(401, 403, 404, 406, 422, 503),
  },
});

const streamTokenRoute = createRoute({
  method: 'post',
  path: '/v1/jobs/{id}/stream-token',
  operationId: 'createStreamToken',
  tags: ['jobs'],
  summary: 'Get a short-lived token to stream a job from a browser',
  description:
    'Browsers cannot set headers on a WebSocket or an EventSource. Your server asks for a token with its API key and hands the URL to the browser; the token streams this job only and expires after LONGHAUL_STREAM_TOKEN_TTL_SECONDS (it is checked when the stream opens).',
  security: [{ apiKey: [] }],
  request: { params: JobIdParam },
  responses: {
    200: { description: 'A stream token', ...jsonContent(StreamTokenSchema) },
    ...errorResponses(400, 401, 404, 413, 415, 422, 503),
  },
});

/** The tenant a stream is for: the API key's, or the one a valid stream token for this very job names. */
async function streamTenant(c: Context<AppEnv>, deps: AppDeps, jobId: string): Promise<string> {
  const tenant: Tenant | undefined = c.get('tenant');
  if (tenant !== undefined) return tenant.id;
  const token = c.req.query('token') ?? '';
  if (deps.signer === undefined)
    throw new ApiError('service-unavailable', 'stream tokens are not available on this process');
  try {
    const claims = await deps.signer.verify('stream', token);
    if (claims.job !== jobId) throw new ApiError('forbidden', 'this stream token is for another job');
    return claims.sub;
  } catch (err) {
    if (err instanceof TokenError)
      throw new ApiError('unauthorized', `the stream token is not valid: ${err.message}`, {
        headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
      });
    throw err;
  }
}

/** Validates like the typed routes do: a 422 problem naming the fields. */
function parsed<T extends z.ZodType>(schema: T, value: unknown, target: 'query' | 'header'): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success)
    throw new ApiError('validation-error', `the request ${target} is not valid`, {
      errors: fieldErrors(result.error.issues, target),
    });
  return result.data;
}

/** SSE is what this endpoint serves over HTTP: asked for by name, or by a client that takes any type (or sends no Accept). */
function wantsEventStream(c: Context<AppEnv>): boolean {
  const accept = c.req.header('accept');
  return accept === undefined || /(^|,)\s*(text\/event-stream|text\/\*|\*\/\*)\s*(;|,|$)/i.test(accept);
}

/** The Node response under the request when served by @hono/node-server (for buffer sizes and cutting a dead peer). */
function nodeResponse(c: Context<AppEnv>): NodeResponseLike | undefined {
  const env: unknown = c.env;
  const outgoing = typeof env === 'object' && env !== null ? (env as { outgoing?: unknown }).outgoing : undefined;
  return typeof outgoing === 'object' && outgoing !== null && 'writableLength' in outgoing
    ? (outgoing as NodeResponseLike)
    : undefined;
}

const EXAMPLE_PAGE = readFileSync(new URL('../../realtime/progress-example.html', import.meta.url), 'utf8');

export function registerEventRoutes(app: App, deps: AppDeps, upgradeWebSocket: UpgradeWebSocket): void {
  const { pool, config } = deps;
  app.openAPIRegistry.registerComponent('securitySchemes', 'streamToken', {
    type: 'apiKey',
    in: 'query',
    name: 'token',
    description: 'A short-lived stream token from `POST /v1/jobs/{id}/stream-token` (for browsers).',
  });
  app.openAPIRegistry.register('StreamMessage', StreamMessageSchema);

  app.openapi(streamTokenRoute, async (c) => {
    const id = parseJobId(c.req.valid('param').id);
    const tenant = c.get('tenant');
    if (deps.signer === undefined)
      throw new ApiError('service-unavailable', 'stream tokens are not available on this process');
    if ((await getJob(pool, tenant.id, id)) === undefined) throw new ApiError('not-found', `no job with id ${id}`);
    const { token, expiresAt } = await deps.signer.sign(
      'stream',
      { sub: tenant.id, job: id },
      config.streamTokenTtlSeconds,
    );
    const url = `${config.publicUrl}/v1/jobs/${id}/events?token=${encodeURIComponent(token)}`;
    return c.json(
      { token, expires_at: expiresAt.toISOString(), events_url: url, websocket_url: url.replace(/^http/, 'ws') },
      200,
    );
  });

  // Documented from the route definition, served by a plain handler: its responses are streams (or an
  // upgrade), which the typed openapi() handlers do not model.
  app.openAPIRegistry.registerPath(eventsRoute);
  app.get('/v1/jobs/:id/events', async (c) => {
    const hub: RealtimeHub | undefined = deps.realtime;
    if (hub === undefined || !hub.accepting)
      throw new ApiError('service-unavailable', 'live events are not available on this process', {
        headers: { 'Retry-After': '1' },
      });
    const id = parseJobId(c.req.param('id'));
    const tenantId = await streamTenant(c, deps, id);
    const websocket = c.req.header('upgrade')?.toLowerCase() === 'websocket';
    if (!websocket && !wantsEventStream(c)) {
      throw new ApiError(
        'not-acceptable',
        'ask for Server-Sent Events (Accept: text/event-stream) or upgrade to a WebSocket',
      );
    }
    const lastEventId = parsed(EventsHeaders, { 'last-event-id': c.req.header('last-event-id') }, 'header')[
      'last-event-id'
    ];
    const after = lastEventId !== undefined ? Number(lastEventId) : parsed(EventsQuery, c.req.query(), 'query').after;
    const snap = await readSnapshot(pool, tenantId, id);
    if (snap === undefined) throw new ApiError('not-found', `no job with id ${id}`);
    if (after !== undefined && after > snap.seq) {
      const field = lastEventId !== undefined ? 'Last-Event-ID' : 'after';
      throw new ApiError('validation-error', `${field} ${after} is beyond the job's last event (${snap.seq})`, {
        errors: [{ field, message: `must be at most ${snap.seq}` }],
      });
    }
    // Resuming past the terminal event: nothing will follow.
    const finished = after !== undefined && after >= snap.seq && isTerminal(snap.job.status);
    const base: Omit<SubscribeOptions, 'sink'> = {
      jobId: id,
      after: after ?? snap.seq,
      current: snap.seq,
      ...(after === undefined ? { snapshot: snapshotMessage(snap.job, snap.seq) } : {}),
      floor:
        after === undefined
          ? { processed: snap.job.processed, percent: snap.job.percent }
          : await progressUpTo(pool, id, after),
    };

    if (websocket) {
      let sub: ReturnType<RealtimeHub['subscribe']> | undefined;
      return upgradeWebSocket(c, {
        onOpen: (_event, ws) => {
          const sink = new WebSocketSink(ws.raw as RawWebSocket);
          if (finished) sink.close('finished');
          else sub = hub.subscribe({ ...base, sink });
        },
        onClose: () => sub?.close('gone'),
      });
    }
    if (finished) return c.body(null, 204);
    return streamSSE(c, async (stream) => {
      const sub = hub.subscribe({ ...base, sink: new SseSink(stream, nodeResponse(c)) });
      stream.onAbort(() => sub.close('gone'));
      await sub.done;
    });
  });

  app.get('/examples/progress.html', (c) => c.html(EXAMPLE_PAGE));
}
