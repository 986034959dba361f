/** /v1/jobs: submit, read, list and cancel jobs. Each route validates, calls one domain function, maps the result. */
import { createRoute, z } from '@hono/zod-openapi';
import { withTransaction } from '../../db/pool.ts';
import { acceptJob, acceptJobs, type Accepted, type Refusal } from '../../jobs/accept.ts';
import { toResource } from '../../jobs/model.ts';
import { cancelJob, cancelMatching } from '../../jobs/lifecycle.ts';
import { getJob, listJobs, type JobFilter } from '../../jobs/repository.ts';
import type { JobStatus } from '../../jobs/state.ts';
import type { CallbackAllowList } from '../../webhooks/allowlist.ts';
import type { Verdict } from '../../tenants/limits.ts';
import { rateLimitHeaders } from '../rate-limit.ts';
import type { App, AppDeps } from '../context.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { ApiError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import {
  CreateJobsSchema,
  CreatedJobsSchema,
  CancelJobsSchema,
  CancelledJobsSchema,
  CreateJobSchema,
  METADATA_PARAM,
  type ListJobsQueryValues,
  IdempotencyHeader,
  JobIdParam,
  JobListSchema,
  JobSchema,
  ListJobsQuery,
} from '../schemas.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A path id that is not a UUID cannot name a job: 404 like any unknown job. */
export function parseJobId(id: string): string {
  if (!UUID.test(id)) throw new ApiError('not-found', `no job with id ${JSON.stringify(id.slice(0, 64))}`);
  return id.toLowerCase();
}

/** The RateLimit headers of a 202, documented: the tenant's limits and what remains of them after `what`. */
function rateLimitHeaderSchemas(what: string) {
  return {
    'RateLimit-Policy': z
      .string()
      .optional()
      .openapi({ description: "The tenant's limits, when it has a pending-jobs or rate limit (as on a 429)" }),
    RateLimit: z
      .string()
      .optional()
      .openapi({ description: `What remains of each of those limits after ${what} (as on a 429)` }),
  };
}

/** Sets each of `headers` on the response. */
function setHeaders(c: { header: (name: string, value: string) => void }, headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
}

const createJob = createRoute({
  method: 'post',
  path: '/v1/jobs',
  operationId: 'createJob',
  tags: ['jobs'],
  summary: 'Submit a job',
  description:
    'Stores the job and queues it in one transaction and answers at once. With an `Idempotency-Key`, a repeat of the same request returns the original response with `Idempotent-Replayed: true` and creates nothing.',
  security: [{ apiKey: [] }],
  request: {
    headers: IdempotencyHeader,
    body: { content: { 'application/json': { schema: CreateJobSchema } }, required: true },
  },
  responses: {
    202: {
      description: 'Accepted; the job is PENDING. (A replay answers the original response.)',
      headers: z.object({
        Location: z.string().openapi({ description: 'URL of the job' }),
        'Idempotent-Replayed': z.string().optional().openapi({ description: '`true` when this is a replay' }),
        ...rateLimitHeaderSchemas('this job'),
      }),
      ...jsonContent(JobSchema),
    },
    ...errorResponses(400, 401, 409, 413, 415, 422, 429),
  },
});

const getJobRoute = createRoute({
  method: 'get',
  path: '/v1/jobs/{id}',
  operationId: 'getJob',
  tags: ['jobs'],
  summary: 'Get a job',
  security: [{ apiKey: [] }],
  request: { params: JobIdParam },
  responses: { 200: { description: 'The job', ...jsonContent(JobSchema) }, ...errorResponses(401, 404) },
});

const listJobsRoute = createRoute({
  method: 'get',
  path: '/v1/jobs',
  operationId: 'listJobs',
  tags: ['jobs'],
  summary: 'List jobs, newest first',
  description:
    'Keyset pagination: pass `next_cursor` as `cursor` for the next page; pages are stable under inserts. Every filter narrows the list. `metadata.KEY=VALUE` (repeatable, one per key) keeps jobs whose `metadata` has KEY with the string VALUE. A query parameter not listed here is a 400 naming it.',
  security: [{ apiKey: [] }],
  request: { query: ListJobsQuery },
  responses: {
    200: { description: 'A page of jobs', ...jsonContent(JobListSchema) },
    ...errorResponses(400, 401, 422),
  },
});

const cancelRoute = createRoute({
  method: 'post',
  path: '/v1/jobs/{id}/cancel',
  operationId: 'cancelJob',
  tags: ['jobs'],
  summary: 'Cancel a job',
  description:
    'A PENDING job becomes CANCELLED at once (200). A RUNNING job is asked to stop (202): its worker stops at the next chunk boundary at the latest. A finished job answers 409.',
  security: [{ apiKey: [] }],
  request: { params: JobIdParam },
  responses: {
    200: { description: 'Cancelled', ...jsonContent(JobSchema) },
    202: { description: 'Cancellation requested; the job stops at its next safe point', ...jsonContent(JobSchema) },
    ...errorResponses(400, 401, 404, 409, 413, 415, 422),
  },
});

const createJobsRoute = createRoute({
  method: 'post',
  path: '/v1/jobs/batch',
  operationId: 'createJobs',
  tags: ['jobs'],
  summary: 'Submit up to 1,000 jobs at once',
  description:
    'All jobs are stored and queued in one transaction, or none is: one invalid job refuses the whole batch with a 422 listing each bad job by index and field (`jobs.3.run_at`); jobs that would take the tenant past its limits refuse it with a 429. Each job may carry its own `idempotency_key`; a job whose key was used before with the same job is replayed (`replayed: true`), not created again. Answers the jobs in the order submitted. The body is bounded by LONGHAUL_BODY_LIMIT_BYTES (413).',
  security: [{ apiKey: [] }],
  request: { body: { content: { 'application/json': { schema: CreateJobsSchema } }, required: true } },
  responses: {
    202: {
      description: 'Accepted; the jobs are PENDING',
      headers: z.object({
        ...rateLimitHeaderSchemas('these jobs'),
      }),
      ...jsonContent(CreatedJobsSchema),
    },
    ...errorResponses(400, 401, 409, 413, 415, 422, 429),
  },
});

const cancelManyRoute = createRoute({
  method: 'post',
  path: '/v1/jobs/cancel',
  operationId: 'cancelJobs',
  tags: ['jobs'],
  summary: 'Cancel every active job matching a filter',
  description:
    'Oldest first, at most `limit` jobs per call, in one transaction: PENDING jobs become CANCELLED at once, RUNNING ones are asked to stop at their next chunk boundary. Answers how many; while `more` is true, call again.',
  security: [{ apiKey: [] }],
  request: { body: { content: { 'application/json': { schema: CancelJobsSchema } }, required: true } },
  responses: {
    200: { description: 'What was cancelled', ...jsonContent(CancelledJobsSchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

/** The filter of a list query or of a bulk action's body; `metadata` from its `metadata.KEY` parameters. */
function jobFilter(
  q: Pick<
    ListJobsQueryValues,
    'type' | 'priority' | 'created_after' | 'created_before' | 'scheduled' | 'schedule_id'
  > & {
    status?: JobStatus | undefined;
  },
  metadata: Record<string, string> | undefined,
): JobFilter {
  return {
    status: q.status,
    type: q.type,
    createdFrom: q.created_after === undefined ? undefined : new Date(q.created_after),
    createdTo: q.created_before === undefined ? undefined : new Date(q.created_before),
    scheduled: q.scheduled === undefined ? undefined : q.scheduled === 'true',
    priority: q.priority,
    scheduleId: q.schedule_id,
    metadata,
  };
}

/** The `metadata.KEY=VALUE` parameters of a list query as one object to contain, or undefined if none. */
function metadataOfQuery(q: Record<string, unknown>): Record<string, string> | undefined {
  const entries = Object.entries(q).flatMap(([k, v]) => {
    const key = METADATA_PARAM.exec(k)?.[1];
    return key === undefined || typeof v !== 'string' ? [] : [[key, v] as const];
  });
  return entries.length === 0 ? undefined : Object.fromEntries(entries);
}

/** The problem a refused submission is answered with. */
export function refusalProblem(r: Refusal): ApiError {
  if (r.kind === 'limited') return limitProblem(r.verdict);
  const headers = r.kind === 'idempotency-key-in-use' ? { 'Retry-After': '1' } : undefined;
  return new ApiError(r.kind, r.detail, { errors: r.errors, headers });
}

/** The 429 of a submission past one of its tenant's limits (src/tenants/limits.ts). */
export function limitProblem(verdict: Verdict): ApiError {
  const headers = rateLimitHeaders(verdict);
  return verdict.refusedBy === 'rate'
    ? new ApiError(
        'rate-limited',
        `the tenant's submission rate is used up; retry in ${verdict.retryAfterSeconds} s (see RateLimit)`,
        { headers },
      )
    : new ApiError(
        'too-many-pending-jobs',
        "the tenant's pending-jobs limit is reached; retry once some of its jobs have started",
        { headers },
      );
}

/** The headers of a 202 from POST /v1/jobs. */
export function acceptedHeaders(a: Accepted): Record<string, string> {
  return {
    ...(a.replayed ? { 'Idempotent-Replayed': 'true' } : {}),
    Location: `/v1/jobs/${a.job.id}`,
    ...(a.limits === undefined ? {} : rateLimitHeaders(a.limits)),
  };
}

export function registerJobRoutes(app: App, deps: AppDeps, allow: CallbackAllowList): void {
  const { pool } = deps;
  app.on('POST', '/v1/jobs', requireJsonBody());

  app.openapi(createJob, async (c) => {
    const accepted = await acceptJob(
      deps,
      allow,
      c.get('tenant'),
      c.req.valid('json'),
      c.req.header('idempotency-key'),
    );
    if (accepted.kind !== 'accepted') throw refusalProblem(accepted);
    setHeaders(c, acceptedHeaders(accepted));
    return c.json(accepted.job, 202);
  });

  app.openapi(getJobRoute, async (c) => {
    const id = parseJobId(c.req.valid('param').id);
    const job = await getJob(pool, c.get('tenant').id, id);
    if (job === undefined) throw new ApiError('not-found', `no job with id ${id}`);
    return c.json(toResource(job), 200);
  });

  app.openapi(listJobsRoute, async (c) => {
    const q = c.req.valid('query');
    const page = await listJobs(pool, c.get('tenant').id, {
      ...jobFilter(q, metadataOfQuery(q)),
      limit: q.limit,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
    return c.json(
      { data: page.rows.map(toResource), next_cursor: page.next === null ? null : encodeCursor(page.next) },
      200,
    );
  });

  app.on('POST', '/v1/jobs/batch', requireJsonBody());
  app.openapi(createJobsRoute, async (c) => {
    if (c.req.header('idempotency-key') !== undefined)
      throw new ApiError('bad-request', 'a batch takes no Idempotency-Key header; give each job its idempotency_key', {
        errors: [{ field: 'Idempotency-Key', message: 'not taken here; use jobs[].idempotency_key' }],
      });
    const accepted = await acceptJobs(deps, allow, c.get('tenant'), c.req.valid('json').jobs);
    if (accepted.kind !== 'accepted') throw refusalProblem(accepted);
    if (accepted.limits !== undefined) setHeaders(c, rateLimitHeaders(accepted.limits));
    return c.json(
      {
        data: accepted.jobs.map(({ job, replayed }) => ({
          id: job.id,
          status: replayed ? ('PENDING' as const) : job.status,
          scheduled_for: job.scheduled_for === null ? null : job.scheduled_for.toISOString(),
          replayed,
        })),
      },
      202,
    );
  });

  app.on('POST', '/v1/jobs/cancel', requireJsonBody());
  app.openapi(cancelManyRoute, async (c) => {
    const body = c.req.valid('json');
    const f = body.filter;
    const filter = jobFilter(
      { ...f, scheduled: f.scheduled === undefined ? undefined : f.scheduled ? 'true' : 'false' },
      f.metadata,
    );
    const out = await withTransaction(pool, (client) => cancelMatching(client, c.get('tenant').id, filter, body.limit));
    return c.json(out, 200);
  });

  app.openapi(cancelRoute, async (c) => {
    const id = parseJobId(c.req.valid('param').id);
    const outcome = await withTransaction(pool, (client) => cancelJob(client, c.get('tenant').id, id));
    switch (outcome.kind) {
      case 'not-found':
        throw new ApiError('not-found', `no job with id ${id}`);
      case 'finished':
        throw new ApiError(
          'invalid-state',
          `the job is ${outcome.job.status}; only PENDING and RUNNING jobs can be cancelled`,
        );
      case 'cancelled':
        return c.json(toResource(outcome.job), 200);
      case 'requested':
        return c.json(toResource(outcome.job), 202);
    }
  });
}
