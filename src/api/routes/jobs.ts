/** /v1/jobs: submit, read, list and cancel jobs. Each route validates, calls one domain function, maps the result. */
import { createRoute, z } from '@hono/zod-openapi';
import { withTransaction } from '../../db/pool.ts';
import { fingerprint, validateKey } from '../../jobs/idempotency.ts';
import { asCreated, toResource, type JobResource, type JobRow } from '../../jobs/model.ts';
import { cancelJob, cancelMatching } from '../../jobs/lifecycle.ts';
import { getJob, listJobs, type JobFilter } from '../../jobs/repository.ts';
import type { JobStatus } from '../../jobs/state.ts';
import { DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, type AnyJobType } from '../../../packages/sdk/src/index.ts';
import { callbackUrlProblem, type CallbackAllowList } from '../../webhooks/allowlist.ts';
import type { Tenant } from '../../tenants/repository.ts';
import type { Verdict } from '../../tenants/limits.ts';
import { rateLimitHeaders } from '../rate-limit.ts';
import { currentContext } from '../../observability/tracing.ts';
import type { App, AppDeps } from '../context.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { ApiError, fieldErrors, type FieldError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import {
  type BatchJob,
  CreateJobsSchema,
  CreatedJobsSchema,
  CancelJobsSchema,
  CancelledJobsSchema,
  CreateJobSchema,
  METADATA_PARAM,
  type ListJobsQueryValues,
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
        'RateLimit-Policy': z
          .string()
          .optional()
          .openapi({ description: "The tenant's limits, when it has a pending-jobs or rate limit (as on a 429)" }),
        RateLimit: z
          .string()
          .optional()
          .openapi({ description: 'What remains of each of those limits after these jobs (as on a 429)' }),
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

/** When a job may start, its priority and its time limits, as a submission asks for them. */
export interface JobTiming {
  scheduledFor: Date | null;
  priority: number;
  timeoutSeconds: number | null;
  expireAfterSeconds: number | null;
}

type TimingFields = Pick<
  CreateJob,
  'run_at' | 'delay_seconds' | 'priority' | 'timeout_seconds' | 'expire_after_seconds'
>;

/**
 * The timing fields checked against each other, the scheduling horizon and the job type's maxima, with
 * the type's defaults filled in; a 422 naming the field (under `prefix`, e.g. `jobs.3.`) if not.
 */
export function checkTiming(
  body: TimingFields,
  type: AnyJobType,
  horizonSeconds: number,
  prefix = '',
  now = Date.now(),
): JobTiming {
  const bad = (field: string, message: string) =>
    new ApiError('validation-error', `${prefix}${field} ${message}`, {
      errors: [{ field: `${prefix}${field}`, message }],
    });
  if (body.run_at !== undefined && body.delay_seconds !== undefined)
    throw bad('delay_seconds', 'cannot be given together with run_at');
  let scheduledFor: Date | null = null;
  if (body.run_at !== undefined) {
    const at = Date.parse(body.run_at);
    if (Number.isNaN(at)) throw bad('run_at', 'is not a real instant (RFC 3339)');
    if (at - now > horizonSeconds * 1000)
      throw bad('run_at', `is more than ${horizonSeconds} seconds ahead (LONGHAUL_SCHEDULE_HORIZON_SECONDS)`);
    scheduledFor = new Date(at);
  } else if (body.delay_seconds !== undefined && body.delay_seconds > 0) {
    if (body.delay_seconds > horizonSeconds)
      throw bad('delay_seconds', `is more than ${horizonSeconds} (LONGHAUL_SCHEDULE_HORIZON_SECONDS)`);
    scheduledFor = new Date(now + body.delay_seconds * 1000);
  }
  const limit = (field: string, asked: number | undefined, byDefault?: number, max?: number): number | null => {
    if (asked !== undefined && max !== undefined && asked > max)
      throw bad(field, `is more than the "${type.name}" job type's maximum of ${max}`);
    return asked ?? byDefault ?? null;
  };
  return {
    scheduledFor,
    priority: body.priority ?? 0,
    timeoutSeconds: limit('timeout_seconds', body.timeout_seconds, type.timeoutSeconds, type.maxTimeoutSeconds),
    expireAfterSeconds: limit(
      'expire_after_seconds',
      body.expire_after_seconds,
      type.expireAfterSeconds,
      type.maxExpireAfterSeconds,
    ),
  };
}

/** The job a request asks for, checked against its type (schema, check, time limits) and the callback allow-list: 4xx if not. */
export async function checkJob(
  registry: AppDeps['registry'],
  allow: CallbackAllowList,
  horizonSeconds: number,
  tenant: Tenant,
  body: CreateJob,
): Promise<{ type: AnyJobType; input: Json; callbackUrl: string | null; timing: JobTiming }> {
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
  const timing = checkTiming(body, type, horizonSeconds);
  return { type, input: parsed.data as Json, callbackUrl: checkCallbackUrl(body.callback_url, allow), timing };
}

/**
 * POST /v1/jobs past its transport: checks the Idempotency-Key, the type and its input, and submits.
 * Shared by the Hono route and the Node-level fast lane (src/api/submit-lane.ts), so they answer alike.
 */
export async function acceptJob(
  deps: Pick<AppDeps, 'registry' | 'submitter' | 'metrics' | 'limitedTenants' | 'config'>,
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
    checked = await checkJob(deps.registry, allow, deps.config.scheduleHorizonSeconds, tenant, body);
  } catch (err) {
    // A repeat of a request that created a job is answered as before, even if it would not be accepted now.
    const stored =
      err instanceof ApiError && idempotency !== null
        ? await deps.submitter.storedReplay(tenant.id, idempotency)
        : undefined;
    if (stored === undefined) throw err;
    return { job: toResource(asCreated(stored)), replayed: true };
  }
  const { type, input, callbackUrl, timing } = checked;

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
    ...timing,
    traceContext: currentContext(),
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

/**
 * POST /v1/jobs/batch past its transport: every job checked as POST /v1/jobs checks one (its problems
 * gathered, named `jobs.INDEX.FIELD`, into one 422), then all submitted in one transaction.
 */
export async function acceptJobs(
  deps: Pick<AppDeps, 'registry' | 'submitter' | 'metrics' | 'config'>,
  allow: CallbackAllowList,
  tenant: Tenant,
  jobs: BatchJob[],
): Promise<{ jobs: Array<{ job: JobRow; replayed: boolean }>; limits: Verdict | undefined }> {
  const errors: FieldError[] = [];
  const firstOfKey = new Map<string, number>();
  const checked = await Promise.all(
    jobs.map(async ({ idempotency_key: key, ...body }, i) => {
      const at = `jobs.${i}.`;
      if (key !== undefined) {
        const bad =
          validateKey(key) ?? (firstOfKey.has(key) ? `repeats the key of jobs.${firstOfKey.get(key)}` : undefined);
        if (bad !== undefined) {
          errors.push({ field: `${at}idempotency_key`, message: bad });
          return undefined;
        }
        firstOfKey.set(key, i);
      }
      const idempotency = key === undefined ? null : { key, fingerprint: fingerprint(body) };
      try {
        const c = await checkJob(deps.registry, allow, deps.config.scheduleHorizonSeconds, tenant, body);
        return { kind: 'new' as const, ...c, idempotency, metadata: (body.metadata ?? null) as Json };
      } catch (err) {
        if (!(err instanceof ApiError) || err.status >= 500) throw err;
        // A repeat of a job that was created is replayed even if it would not be accepted now (as POST /v1/jobs).
        const stored = idempotency === null ? undefined : await deps.submitter.storedReplay(tenant.id, idempotency);
        if (stored !== undefined) return { kind: 'stored' as const, job: asCreated(stored) };
        errors.push(
          ...(err.errors ?? [{ field: 'type', message: err.detail }]).map((e) => ({ ...e, field: at + e.field })),
        );
        return undefined;
      }
    }),
  );
  if (errors.length > 0)
    throw new ApiError(
      'validation-error',
      `${new Set(errors.map((e) => e.field.split('.')[1])).size} of the jobs are not valid; none was submitted`,
      {
        errors,
      },
    );
  const toSubmit = checked.flatMap((c) => (c?.kind === 'new' ? [c] : []));
  const outcome = await deps.submitter.submitAll(
    tenant.id,
    toSubmit.map((c) => {
      return {
        tenantId: tenant.id,
        type: c.type.name,
        input: c.input,
        metadata: c.metadata,
        callbackUrl: c.callbackUrl,
        maxAttempts: c.type.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        backoff: c.type.backoff ?? DEFAULT_BACKOFF,
        idempotency: c.idempotency,
        ...c.timing,
      };
    }),
  );
  switch (outcome.kind) {
    case 'in-flight':
      throw new ApiError(
        'idempotency-key-in-use',
        `the idempotency_key of ${outcome.indexes.map((i) => `jobs.${i}`).join(', ')} is held by a submission still being processed; retry later`,
        {
          headers: { 'Retry-After': '1' },
          errors: outcome.indexes.map((i) => ({
            field: `jobs.${i}.idempotency_key`,
            message: 'in use by a submission still being processed',
          })),
        },
      );
    case 'key-reused':
      throw new ApiError(
        'idempotency-key-reused',
        'idempotency_key already used with a different job; none was submitted',
        {
          errors: outcome.indexes.map((i) => ({
            field: `jobs.${i}.idempotency_key`,
            message: 'already used with a different job',
          })),
        },
      );
    case 'limited':
      throw limitProblem(outcome.verdict);
    case 'accepted': {
      const submitted = outcome.outcomes.values();
      const jobs = checked.map((c) => {
        if (c?.kind === 'stored') return { job: c.job, replayed: true };
        const o = submitted.next().value;
        if (o === undefined) throw new Error('batch lost a job');
        if (o.kind === 'created') deps.metrics.jobsSubmitted.inc({ type: o.job.type });
        return { job: o.job, replayed: o.kind === 'replayed' };
      });
      return { jobs, limits: outcome.limits };
    }
  }
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
    if (accepted.limits !== undefined)
      for (const [name, value] of Object.entries(rateLimitHeaders(accepted.limits))) c.header(name, value);
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
