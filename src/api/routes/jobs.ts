/** /v1/jobs: submit, read, list and cancel jobs. Each route validates, calls one domain function, maps the result. */
import { createRoute, z } from '@hono/zod-openapi';
import { withTransaction } from '../../db/pool.ts';
import { fingerprint, validateKey } from '../../jobs/idempotency.ts';
import { asCreated, toResource, type JobResource } from '../../jobs/model.ts';
import { cancelJob, getJob, listJobs } from '../../jobs/repository.ts';
import { DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, type AnyJobType } from '../../../packages/sdk/src/index.ts';
import { callbackUrlProblem, type CallbackAllowList } from '../../webhooks/allowlist.ts';
import type { Tenant } from '../../tenants/repository.ts';
import type { Verdict } from '../../tenants/limits.ts';
import { rateLimitHeaders } from '../rate-limit.ts';
import type { App, AppDeps } from '../context.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { ApiError, fieldErrors } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import {
  CreateJobSchema,
  type CreateJob,
  IdempotencyHeader,
  JobIdParam,
  JobListSchema,
  JobSchema,
  ListJobsQuery,
} from '../schemas.ts';
import type { Json } from '../../../packages/sdk/src/index.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A path id that is not a UUID cannot name a job: 404 like any unknown job. */
export function parseJobId(id: string): string {
  if (!UUID.test(id)) throw new ApiError('not-found', `no job with id ${JSON.stringify(id.slice(0, 64))}`);
  return id.toLowerCase();
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
        'RateLimit-Policy': z
          .string()
          .optional()
          .openapi({ description: "The tenant's limits, when it has a pending-jobs or rate limit (as on a 429)" }),
        RateLimit: z
          .string()
          .optional()
          .openapi({ description: 'What remains of each of those limits after this job (as on a 429)' }),
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
  description: 'Keyset pagination: pass `next_cursor` as `cursor` for the next page; pages are stable under inserts.',
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

export function checkCallbackUrl(raw: string | undefined, allow: CallbackAllowList): string | null {
  if (raw === undefined) return null;
  const problem = callbackUrlProblem(raw, allow);
  if (problem !== undefined)
    throw new ApiError('validation-error', `callback_url ${problem}`, {
      errors: [{ field: 'callback_url', message: problem }],
    });
  return raw;
}

/** What POST /v1/jobs answers with 202: the job, whether it is a replay of an earlier request, and the tenant's limits. */
export interface Accepted {
  job: JobResource;
  replayed: boolean;
  limits?: Verdict;
}

/** The job a request asks for, checked against its type (schema and check) and the callback allow-list: 4xx if not. */
async function checkJob(
  registry: AppDeps['registry'],
  allow: CallbackAllowList,
  tenant: Tenant,
  body: CreateJob,
): Promise<{ type: AnyJobType; input: Json; callbackUrl: string | null }> {
  const type = registry.get(body.type);
  if (type === undefined) {
    throw new ApiError('unknown-job-type', `no job type "${body.type}"; known types: ${registry.names().join(', ')}`, {
      errors: [{ field: 'type', message: 'unknown job type' }],
    });
  }
  const parsed = type.input.safeParse(body.input);
  if (!parsed.success)
    throw new ApiError('validation-error', `input does not match the "${type.name}" schema`, {
      errors: fieldErrors(parsed.error.issues, 'input'),
    });
  const extra = (await type.check?.(parsed.data, { tenant: { id: tenant.id, name: tenant.name } })) ?? [];
  if (extra.length > 0)
    throw new ApiError('validation-error', `input is not valid for "${type.name}"`, {
      errors: extra.map((e) => ({ ...e, field: `input.${e.field}` })),
    });
  return { type, input: parsed.data as Json, callbackUrl: checkCallbackUrl(body.callback_url, allow) };
}

/**
 * POST /v1/jobs past its transport: checks the Idempotency-Key, the type and its input, and submits.
 * Shared by the Hono route and the Node-level fast lane (src/api/submit-lane.ts), so they answer alike.
 */
export async function acceptJob(
  deps: Pick<AppDeps, 'registry' | 'submitter' | 'metrics' | 'limitedTenants'>,
  allow: CallbackAllowList,
  tenant: Tenant,
  body: CreateJob,
  rawKey: string | undefined,
): Promise<Accepted> {
  if (rawKey !== undefined) {
    const bad = validateKey(rawKey);
    if (bad !== undefined)
      throw new ApiError('bad-request', `Idempotency-Key ${bad}`, {
        errors: [{ field: 'Idempotency-Key', message: bad }],
      });
  }
  const idempotency = rawKey === undefined ? null : { key: rawKey, fingerprint: fingerprint(body) };
  let checked: Awaited<ReturnType<typeof checkJob>>;
  try {
    checked = await checkJob(deps.registry, allow, tenant, body);
  } catch (err) {
    // A repeat of a request that created a job is answered as before, even if it would not be accepted now.
    const stored =
      err instanceof ApiError && idempotency !== null
        ? await deps.submitter.storedReplay(tenant.id, idempotency)
        : undefined;
    if (stored === undefined) throw err;
    return { job: toResource(asCreated(stored)), replayed: true };
  }
  const { type, input, callbackUrl } = checked;

  const outcome = await deps.submitter.submit({
    tenantId: tenant.id,
    type: type.name,
    input,
    metadata: (body.metadata ?? null) as Json,
    callbackUrl,
    maxAttempts: type.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    backoff: type.backoff ?? DEFAULT_BACKOFF,
    idempotency,
    limited: (await deps.limitedTenants?.has(tenant.id)) ?? false,
  });
  switch (outcome.kind) {
    case 'in-flight':
      throw new ApiError(
        'idempotency-key-in-use',
        'a request with this Idempotency-Key is still being processed; retry later',
        { headers: { 'Retry-After': '1' } },
      );
    case 'key-reused':
      throw new ApiError(
        'idempotency-key-reused',
        'this Idempotency-Key was already used with a different request body',
      );
    case 'limited':
      throw limitProblem(outcome.verdict);
    case 'replayed':
      return { job: toResource(asCreated(outcome.job)), replayed: true };
    case 'created':
      deps.metrics.jobsSubmitted.inc({ type: type.name });
      return { job: toResource(outcome.job), replayed: false, limits: outcome.limits };
  }
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
    for (const [name, value] of Object.entries(acceptedHeaders(accepted))) c.header(name, value);
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
      status: q.status,
      type: q.type,
      limit: q.limit,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
    return c.json(
      { data: page.rows.map(toResource), next_cursor: page.next === null ? null : encodeCursor(page.next) },
      200,
    );
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
