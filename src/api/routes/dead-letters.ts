/** The dead-letter queue: list a tenant's dead-lettered jobs, replay one, or replay many by type and time range. */
import { createRoute, z } from '@hono/zod-openapi';
import { withTransaction } from '../../db/pool.ts';
import { toResource } from '../../jobs/model.ts';
import { listDeadLetters } from '../../jobs/repository.ts';
import { replayJob, replayMany } from '../../worker/dead-letters.ts';
import type { App, AppDeps } from '../context.ts';
import { ApiError, invalidRequest } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { JobIdParam, JobSchema, listQuery, PageQueryFields } from '../schemas.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { parseJobId } from './jobs.ts';

const ReplayFromSchema = z
  .enum(['checkpoint', 'start'])
  .openapi({ description: 'Resume from the last checkpoint (default) or start over.' });

const DeadLetterSchema = z
  .object({
    kind: z.literal('job'),
    dead_lettered_at: z.string().datetime(),
    job: JobSchema,
  })
  .openapi('DeadLetter');

const DeadLetterListSchema = z
  .object({ data: z.array(DeadLetterSchema), next_cursor: z.string().nullable() })
  .openapi('DeadLetterList');

const ListQuery = listQuery({
  kind: z
    .enum(['job'])
    .default('job')
    .openapi({ param: { name: 'kind', in: 'query' } }),
  type: z
    .string()
    .max(64)
    .optional()
    .openapi({ param: { name: 'type', in: 'query' } }),
  since: z
    .string()
    .datetime()
    .optional()
    .openapi({ param: { name: 'since', in: 'query' }, description: 'Dead-lettered at or after (RFC 3339).' }),
  until: z
    .string()
    .datetime()
    .optional()
    .openapi({ param: { name: 'until', in: 'query' }, description: 'Dead-lettered before (RFC 3339).' }),
  ...PageQueryFields,
});

const RetryBody = z
  .object({ from: ReplayFromSchema.default('checkpoint') })
  .strict()
  .openapi('RetryJob');

const ReplayBody = z
  .object({
    kind: z.literal('job').default('job'),
    type: z.string().max(64).optional(),
    since: z.string().datetime().optional(),
    until: z.string().datetime().optional(),
    from: ReplayFromSchema.default('checkpoint'),
    limit: z.number().int().min(1).max(1000).default(100),
  })
  .strict()
  .openapi('ReplayDeadLetters');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/dead-letters',
  operationId: 'listDeadLetters',
  tags: ['dead letters'],
  summary: 'List dead-lettered jobs, newest first',
  description:
    'Jobs that failed for good (attempts exhausted or a permanent error); `job.error_history` holds the error of every attempt.',
  security: [{ apiKey: [] }],
  request: { query: ListQuery },
  responses: {
    200: { description: 'A page of dead letters', ...jsonContent(DeadLetterListSchema) },
    ...errorResponses(400, 401, 422),
  },
});

const retryRoute = createRoute({
  method: 'post',
  path: '/v1/jobs/{id}/retry',
  operationId: 'retryJob',
  tags: ['dead letters'],
  summary: 'Replay a failed job',
  description:
    'A FAILED job gets a fresh set of attempts and runs again, from its last checkpoint (default) or from the start with `{"from": "start"}`.',
  security: [{ apiKey: [] }],
  request: { params: JobIdParam, body: { content: { 'application/json': { schema: RetryBody } }, required: false } },
  responses: {
    202: { description: 'Replayed; the job is PENDING', ...jsonContent(JobSchema) },
    ...errorResponses(400, 401, 404, 409, 413, 415, 422),
  },
});

const replayRoute = createRoute({
  method: 'post',
  path: '/v1/dead-letters/replay',
  operationId: 'replayDeadLetters',
  tags: ['dead letters'],
  summary: 'Replay dead-lettered jobs in bulk',
  description: 'Replays the oldest `limit` dead-lettered jobs matching the type and time range.',
  security: [{ apiKey: [] }],
  request: { body: { content: { 'application/json': { schema: ReplayBody } }, required: true } },
  responses: {
    202: {
      description: 'The jobs replayed',
      ...jsonContent(
        z.object({ replayed: z.number().int(), job_ids: z.array(z.string().uuid()) }).openapi('ReplayResult'),
      ),
    },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const date = (s: string | undefined): Date | undefined => (s === undefined ? undefined : new Date(s));

export function registerDeadLetterRoutes(app: App, deps: AppDeps): void {
  const { pool, boss, registry } = deps;
  app.on('POST', '/v1/dead-letters/replay', requireJsonBody());

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    const page = await listDeadLetters(pool, c.get('tenant').id, {
      type: q.type,
      since: date(q.since),
      until: date(q.until),
      limit: q.limit,
      after: after === undefined ? undefined : { at: after.createdAt, id: after.id },
    });
    return c.json(
      {
        data: page.rows.map((d) => ({
          kind: 'job' as const,
          dead_lettered_at: d.deadLetteredAt.toISOString(),
          job: toResource(d.job),
        })),
        next_cursor: page.next === null ? null : encodeCursor({ createdAt: page.next.at, id: page.next.id }),
      },
      200,
    );
  });

  app.openapi(retryRoute, async (c) => {
    const id = parseJobId(c.req.valid('param').id);
    // The body is optional: no body means "from the checkpoint". One that was sent has been read and
    // checked by readBody, as every body is, and is in Hono's body cache.
    const text = await c.req.text();
    let from: 'checkpoint' | 'start' = 'checkpoint';
    if (text !== '') {
      const parsed = RetryBody.safeParse(JSON.parse(text));
      if (!parsed.success) throw invalidRequest('json', parsed.error.issues);
      from = parsed.data.from;
    }
    const out = await withTransaction(pool, (db) => replayJob(db, boss, registry, c.get('tenant').id, id, from));
    if (out.kind === 'not-found') throw new ApiError('not-found', `no job with id ${id}`);
    if (out.kind === 'not-failed')
      throw new ApiError('invalid-state', `the job is ${out.job.status}; only FAILED jobs can be retried`);
    c.get('log').info({ job_id: id, from }, 'job replayed');
    return c.json(toResource(out.job), 202);
  });

  app.openapi(replayRoute, async (c) => {
    const b = c.req.valid('json');
    const ids = await replayMany(pool, boss, registry, c.get('tenant').id, {
      type: b.type,
      since: date(b.since),
      until: date(b.until),
      limit: b.limit,
      from: b.from,
    });
    c.get('log').info({ count: ids.length, type: b.type, from: b.from }, 'dead letters replayed');
    return c.json({ replayed: ids.length, job_ids: ids }, 202);
  });
}
