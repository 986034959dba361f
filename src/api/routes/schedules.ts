/** /v1/schedules: a tenant's recurring schedules (docs/scheduling.md). Each route validates, calls the store, maps the result. */
import { randomUUID } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import { withTransaction } from '../../db/pool.ts';
import type { Json } from '../../../packages/sdk/src/index.ts';
import { cronProblem, nextOccurrence } from '../../schedules/cron.ts';
import { setSchedulePaused } from '../../schedules/pause.ts';
import {
  createSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  lockSchedule,
  ScheduleNameTaken,
  updateSchedule,
  type ScheduleRow,
  type ScheduleSpec,
} from '../../schedules/store.ts';
import type { Tenant } from '../../tenants/repository.ts';
import type { CallbackAllowList } from '../../webhooks/allowlist.ts';
import type { App, AppDeps } from '../context.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { ApiError, type FieldError } from '../errors.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import {
  CreateScheduleSchema,
  ListSchedulesQuery,
  ScheduleIdParam,
  ScheduleListSchema,
  ScheduleSchema,
  UpdateScheduleSchema,
} from '../schemas.ts';
import { checkJob } from '../../jobs/accept.ts';
import { refusalProblem } from './jobs.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function scheduleId(id: string): string {
  if (!UUID.test(id)) throw new ApiError('not-found', `no schedule with id ${JSON.stringify(id.slice(0, 64))}`);
  return id.toLowerCase();
}

const notFound = (id: string) => new ApiError('not-found', `no schedule with id ${id}`);

const security = [{ apiKey: [] }];
const tags = ['schedules'];
const one = (description: string) => ({ description, ...jsonContent(ScheduleSchema) });

const createRouteDef = createRoute({
  method: 'post',
  path: '/v1/schedules',
  operationId: 'createSchedule',
  tags,
  summary: 'Create a recurring schedule',
  description:
    'Each occurrence of `cron` in `timezone` creates one job (linked back by `schedule_id`), exactly once however many workers run. The job is checked now as POST /v1/jobs would check it.',
  security,
  request: { body: { content: { 'application/json': { schema: CreateScheduleSchema } }, required: true } },
  responses: { 201: one('Created'), ...errorResponses(400, 401, 409, 413, 415, 422) },
});

const listRouteDef = createRoute({
  method: 'get',
  path: '/v1/schedules',
  operationId: 'listSchedules',
  tags,
  summary: 'List schedules, newest first',
  security,
  request: { query: ListSchedulesQuery },
  responses: {
    200: { description: 'A page of schedules', ...jsonContent(ScheduleListSchema) },
    ...errorResponses(400, 401, 422),
  },
});

const getRouteDef = createRoute({
  method: 'get',
  path: '/v1/schedules/{id}',
  operationId: 'getSchedule',
  tags,
  summary: 'Get a schedule',
  security,
  request: { params: ScheduleIdParam },
  responses: { 200: one('The schedule'), ...errorResponses(401, 404) },
});

const updateRouteDef = createRoute({
  method: 'patch',
  path: '/v1/schedules/{id}',
  operationId: 'updateSchedule',
  tags,
  summary: 'Change a schedule',
  description: 'A new `cron` or `timezone` owes its next occurrence from now on.',
  security,
  request: {
    params: ScheduleIdParam,
    body: { content: { 'application/json': { schema: UpdateScheduleSchema } }, required: true },
  },
  responses: { 200: one('The schedule after the change'), ...errorResponses(400, 401, 404, 409, 413, 415, 422) },
});

const deleteRouteDef = createRoute({
  method: 'delete',
  path: '/v1/schedules/{id}',
  operationId: 'deleteSchedule',
  tags,
  summary: 'Delete a schedule',
  description: 'Its jobs stay, and keep its id in `schedule_id`.',
  security,
  request: { params: ScheduleIdParam },
  responses: { 204: { description: 'Deleted' }, ...errorResponses(401, 404) },
});

const pauseRouteDef = createRoute({
  method: 'post',
  path: '/v1/schedules/{id}/pause',
  operationId: 'pauseSchedule',
  tags,
  summary: 'Pause a schedule',
  description: 'No occurrence fires until it is resumed; pausing a paused schedule changes nothing.',
  security,
  request: { params: ScheduleIdParam },
  responses: { 200: one('The paused schedule'), ...errorResponses(401, 404) },
});

const resumeRouteDef = createRoute({
  method: 'post',
  path: '/v1/schedules/{id}/resume',
  operationId: 'resumeSchedule',
  tags,
  summary: 'Resume a schedule',
  description: 'The next occurrence after now fires; those that came while it was paused do not.',
  security,
  request: { params: ScheduleIdParam },
  responses: { 200: one('The resumed schedule'), ...errorResponses(401, 404) },
});

function toResource(s: ScheduleRow) {
  const iso = (d: Date | null) => (d === null ? null : d.toISOString());
  return {
    id: s.id,
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    job: s.job,
    overlap: s.overlap,
    paused: s.paused_at !== null,
    next_fire_at: iso(s.next_fire_at),
    last_fire_at: iso(s.last_fire_at),
    last_job_id: s.last_job_id,
    last_outcome: s.last_outcome,
    created_at: s.created_at.toISOString(),
    updated_at: s.updated_at.toISOString(),
  };
}

/** The spec checked whole: cron and time zone, and the job as POST /v1/jobs would take it. 422 naming the field if not. */
async function checkSpec(
  deps: AppDeps,
  allow: CallbackAllowList,
  tenant: Tenant,
  spec: ScheduleSpec,
): Promise<ScheduleSpec> {
  const problem = cronProblem(spec.cron, spec.timezone);
  if (problem !== undefined)
    throw new ApiError('validation-error', `${problem.field} ${problem.message}`, { errors: [problem] });
  const checked = await checkJob(deps.registry, allow, deps.config.scheduleHorizonSeconds, tenant, {
    type: spec.job.type,
    input: spec.job.input,
    ...(spec.job.callback_url === null ? {} : { callback_url: spec.job.callback_url }),
  });
  if (checked.kind === 'checked') return { ...spec, job: { ...spec.job, input: checked.input } };
  const err = refusalProblem(checked);
  // The job's fields are under `job.` in this body.
  if (err.errors === undefined) throw err;
  const errors: FieldError[] = err.errors.map((e) => ({ ...e, field: `job.${e.field}` }));
  throw new ApiError(err.code, `job: ${err.detail}`, { errors });
}

function conflictOf(err: unknown): unknown {
  return err instanceof ScheduleNameTaken ? new ApiError('invalid-state', err.message) : err;
}

export function registerScheduleRoutes(app: App, deps: AppDeps, allow: CallbackAllowList): void {
  const { pool } = deps;
  app.on('POST', '/v1/schedules', requireJsonBody());
  app.on('PATCH', '/v1/schedules/:id', requireJsonBody());

  app.openapi(createRouteDef, async (c) => {
    const body = c.req.valid('json');
    const tenant = c.get('tenant');
    const spec = await checkSpec(deps, allow, tenant, {
      ...body,
      job: {
        type: body.job.type,
        input: body.job.input as Json,
        metadata: (body.job.metadata ?? null) as Json,
        callback_url: body.job.callback_url ?? null,
      },
    });
    // The id seeds an `H` in the expression, so it is chosen before the first occurrence is.
    const id = randomUUID();
    const next = nextOccurrence(spec.cron, spec.timezone, id, new Date());
    const row = await createSchedule(pool, tenant.id, id, spec, next).catch((err: unknown) => {
      throw conflictOf(err);
    });
    c.header('Location', `/v1/schedules/${row.id}`);
    return c.json(toResource(row), 201);
  });

  app.openapi(listRouteDef, async (c) => {
    const q = c.req.valid('query');
    const page = await listSchedules(pool, c.get('tenant').id, {
      limit: q.limit,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
    return c.json(
      { data: page.rows.map(toResource), next_cursor: page.next === null ? null : encodeCursor(page.next) },
      200,
    );
  });

  app.openapi(getRouteDef, async (c) => {
    const id = scheduleId(c.req.valid('param').id);
    const row = await getSchedule(pool, c.get('tenant').id, id);
    if (row === undefined) throw notFound(id);
    return c.json(toResource(row), 200);
  });

  app.openapi(updateRouteDef, async (c) => {
    const id = scheduleId(c.req.valid('param').id);
    const patch = c.req.valid('json');
    const tenant = c.get('tenant');
    const row = await withTransaction(pool, async (client) => {
      const current = await lockSchedule(client, tenant.id, id);
      if (current === undefined) throw notFound(id);
      const spec = await checkSpec(deps, allow, tenant, {
        name: patch.name ?? current.name,
        cron: patch.cron ?? current.cron,
        timezone: patch.timezone ?? current.timezone,
        overlap: patch.overlap ?? current.overlap,
        job:
          patch.job === undefined
            ? current.job
            : {
                type: patch.job.type,
                input: patch.job.input as Json,
                metadata: (patch.job.metadata ?? null) as Json,
                callback_url: patch.job.callback_url ?? null,
              },
      });
      const retimed = spec.cron !== current.cron || spec.timezone !== current.timezone;
      const next =
        current.paused_at !== null
          ? null
          : retimed
            ? nextOccurrence(spec.cron, spec.timezone, id, new Date())
            : current.next_fire_at;
      return updateSchedule(client, id, spec, current.paused_at, next);
    }).catch((err: unknown) => {
      throw conflictOf(err);
    });
    return c.json(toResource(row), 200);
  });

  app.openapi(deleteRouteDef, async (c) => {
    const id = scheduleId(c.req.valid('param').id);
    if (!(await deleteSchedule(pool, c.get('tenant').id, id))) throw notFound(id);
    return c.body(null, 204);
  });

  const setPaused = (paused: boolean) => async (tenantId: string, id: string) => {
    const row = await setSchedulePaused(pool, tenantId, id, paused);
    if (row === undefined) throw notFound(id);
    return row;
  };
  const pause = setPaused(true);
  const resume = setPaused(false);

  app.openapi(pauseRouteDef, async (c) => {
    const row = await pause(c.get('tenant').id, scheduleId(c.req.valid('param').id));
    return c.json(toResource(row), 200);
  });

  app.openapi(resumeRouteDef, async (c) => {
    const row = await resume(c.get('tenant').id, scheduleId(c.req.valid('param').id));
    return c.json(toResource(row), 200);
  });
}
