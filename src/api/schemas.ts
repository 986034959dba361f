/** Zod schemas of the API's bodies and parameters: they validate requests and generate openapi.yaml. */
import { z } from '@hono/zod-openapi';
import { MAX_TIME_LIMIT_SECONDS, PRIORITY_MAX, PRIORITY_MIN } from '../jobs/model.ts';
import { JOB_STATUSES } from '../jobs/state.ts';

export const JsonValue = z.unknown().openapi({ description: 'Any JSON value' });
/** A JSON value a response always carries (`null` when there is none): listed as required in the spec. */
const PresentJson = z.any().nonoptional().openapi({ description: 'Any JSON value' });

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: 'https://longhaul.dev/problems/validation-error' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    request_id: z.string().optional(),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  })
  .openapi('Problem', { description: 'An RFC 9457 problem detail. `type` is stable per kind of error.' });

export const JobStatusSchema = z.enum(JOB_STATUSES).openapi('JobStatus');

/** One entry of a job's error_history, as src/worker/attempts.ts settleAttempt() writes it. */
export const AttemptErrorSchema = z
  .object({
    kind: z.enum(['failure', 'lease_lost', 'timeout', 'expired']).openapi({
      description:
        '`failure`: the attempt failed (it spent one of `max_attempts`). `lease_lost`: its worker was lost (killed, hung or cut off past its lease) and another took the job over from its checkpoint; this spends no attempt, and only LONGHAUL_MAX_LEASE_LOSSES of them dead-letter the job. `timeout`: the job ran longer than its `timeout_seconds` in all; `expired`: it had not started by its `expires_at`. Both fail the job for good (not dead-lettered).',
    }),
    message: z.string(),
    name: z.string().optional().openapi({ description: 'The error class (`LeaseExpired` for a lost lease)' }),
    attempt: z.number().int().openapi({ description: 'The attempt it happened in (a lost lease does not end it)' }),
    permanent: z.boolean().optional().openapi({ description: 'A PermanentError: the job failed without retries' }),
    lease_losses: z
      .number()
      .int()
      .optional()
      .openapi({ description: 'For `lease_lost`: how many times the job has lost its worker, this one included' }),
    at: z.string().datetime(),
  })
  .openapi('AttemptError');

export const JobSchema = z
  .object({
    id: z.string().uuid(),
    type: z.string(),
    status: JobStatusSchema,
    input: PresentJson,
    metadata: PresentJson,
    callback_url: z.string().nullable(),
    progress: z.object({
      processed: z.number().int(),
      total: z.number().int().nullable(),
      percent: z.number().nullable(),
    }),
    attempts: z.number().int(),
    max_attempts: z.number().int(),
    result: PresentJson,
    error: PresentJson,
    error_history: z
      .array(AttemptErrorSchema)
      .openapi({ description: 'Every failed attempt and every lost worker, oldest first, each with its `kind`.' }),
    scheduled_for: z
      .string()
      .datetime()
      .nullable()
      .openapi({ description: 'When the job may start (`run_at`, or submission + `delay_seconds`); null: at once.' }),
    priority: z.number().int().openapi({ description: 'Higher starts first among jobs waiting to run.' }),
    timeout_seconds: z.number().int().nullable().openapi({
      description: 'Longest time from its first start to its end, across executions and retries; null: no limit.',
    }),
    expires_at: z
      .string()
      .datetime()
      .nullable()
      .openapi({ description: 'Not started by then, the job fails with an `expired` error; null: no limit.' }),
    schedule_id: z.string().uuid().nullable().openapi({ description: 'The recurring schedule that created it.' }),
    created_at: z.string().datetime(),
    started_at: z.string().datetime().nullable(),
    updated_at: z.string().datetime(),
    finished_at: z.string().datetime().nullable(),
  })
  .openapi('Job');

/** When and how urgently a job runs, and its time limits: fields of a submission (single or in a batch). */
export const JobTimingFields = {
  run_at: z.string().datetime({ offset: true }).optional().openapi({
    description:
      'RFC 3339 instant before which the job does not start (a past instant: at once). Not with `delay_seconds`; at most LONGHAUL_SCHEDULE_HORIZON_SECONDS ahead.',
    example: '2030-01-01T02:00:00Z',
  }),
  delay_seconds: z.number().int().min(0).optional().openapi({
    description: 'Seconds from submission before the job may start. Not with `run_at`.',
    example: 3600,
  }),
  priority: z
    .number()
    .int()
    .min(PRIORITY_MIN)
    .max(PRIORITY_MAX)
    .optional()
    .openapi({
      description: `Higher starts first among waiting jobs, from ${PRIORITY_MIN} to ${PRIORITY_MAX}. (Default: 0)`,
    }),
  timeout_seconds: z.number().int().min(1).max(MAX_TIME_LIMIT_SECONDS).optional().openapi({
    description:
      "Longest the job may run in all, from its first start to its end (across executions and retries); past it, it fails with a `timeout` error. At most the job type's maximum. (Default: the job type's)",
  }),
  expire_after_seconds: z.number().int().min(1).max(MAX_TIME_LIMIT_SECONDS).optional().openapi({
    description:
      "A job not started this long after it may start is never run and fails with an `expired` error. At most the job type's maximum. (Default: the job type's)",
  }),
};

export const CreateJobSchema = z
  .object({
    type: z.string().min(1).max(64).openapi({ example: 'synthetic' }),
    input: JsonValue.openapi({ example: { chunks: 10, chunk_ms: 100 } }),
    callback_url: z.string().max(2048).optional().openapi({
      description: 'Absolute https URL (no credentials) that receives signed job.completed/failed/cancelled events.',
      example: 'https://partner.example/hooks/longhaul',
    }),
    metadata: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: 'Free-form JSON object, returned as is.' }),
    ...JobTimingFields,
  })
  .strict()
  .openapi('CreateJob');
export type CreateJob = z.infer<typeof CreateJobSchema>;

/** Most jobs in one POST /v1/jobs/batch. */
export const MAX_BATCH_JOBS = 1000;

export const BatchJobSchema = CreateJobSchema.extend({
  idempotency_key: z.string().optional().openapi({
    description:
      "This job's Idempotency-Key (as the header of a single submission; keys in one batch must differ): a repeat of the same job replays it.",
  }),
})
  .strict()
  .openapi('BatchJob');
export type BatchJob = z.infer<typeof BatchJobSchema>;

export const CreateJobsSchema = z
  .object({ jobs: z.array(BatchJobSchema).min(1).max(MAX_BATCH_JOBS) })
  .strict()
  .openapi('CreateJobs');

export const CreatedJobsSchema = z
  .object({
    data: z.array(
      z.object({
        id: z.string().uuid(),
        status: JobStatusSchema,
        scheduled_for: z.string().datetime().nullable(),
        replayed: z.boolean().openapi({ description: 'An earlier submission with this idempotency_key created it' }),
      }),
    ),
  })
  .openapi('CreatedJobs', { description: 'The jobs, in the order submitted.' });

export const JobListSchema = z
  .object({
    data: z.array(JobSchema),
    next_cursor: z.string().nullable(),
  })
  .openapi('JobList');

export const JobIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60' }),
});

/** The job filters a list and a bulk action share, as query parameters (all optional; each narrows). */
const JobFilterFields = {
  status: JobStatusSchema.optional().openapi({ param: { name: 'status', in: 'query' } }),
  type: z
    .string()
    .max(64)
    .optional()
    .openapi({ param: { name: 'type', in: 'query' } }),
  created_after: z
    .string()
    .datetime({ offset: true })
    .optional()
    .openapi({ param: { name: 'created_after', in: 'query' }, description: 'Created at or after (RFC 3339).' }),
  created_before: z
    .string()
    .datetime({ offset: true })
    .optional()
    .openapi({ param: { name: 'created_before', in: 'query' }, description: 'Created before (RFC 3339).' }),
  scheduled: z
    .enum(['true', 'false'])
    .optional()
    .openapi({
      param: { name: 'scheduled', in: 'query' },
      description: '`true`: only PENDING jobs waiting for a `scheduled_for` still ahead; `false`: only the others.',
    }),
  priority: z.coerce
    .number()
    .int()
    .min(PRIORITY_MIN)
    .max(PRIORITY_MAX)
    .optional()
    .openapi({ param: { name: 'priority', in: 'query' } }),
  schedule_id: z
    .string()
    .uuid()
    .optional()
    .openapi({
      param: { name: 'schedule_id', in: 'query' },
      description: 'Only jobs this recurring schedule created.',
    }),
};

/** `metadata.KEY=VALUE` query parameters: jobs whose metadata has KEY with the string VALUE. */
export const METADATA_PARAM = /^metadata\.([A-Za-z0-9_-]{1,64})$/;

/**
 * The query of a list endpoint: a parameter it does not declare is refused (400 naming it, see
 * invalidRequest), so a misspelt filter never reads as an unfiltered list.
 */
export function listQuery<T extends z.ZodRawShape>(shape: T) {
  return z.object(shape).strict();
}

/** The paging parameters of every list route: `limit` and the opaque `cursor` of the previous page. */
export const PageQueryFields = {
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(200)
    .default(50)
    .openapi({ param: { name: 'limit', in: 'query' } }),
  cursor: z
    .string()
    .max(200)
    .optional()
    .openapi({ param: { name: 'cursor', in: 'query' } }),
};

const listJobsFields = {
  ...JobFilterFields,
  ...PageQueryFields,
};

/** GET /v1/jobs's query: its declared parameters and any `metadata.KEY`; anything else is refused. */
export const ListJobsQuery = z
  .object(listJobsFields)
  .catchall(z.string().max(1024))
  .superRefine((q, ctx) => {
    const unknown = Object.keys(q).filter((k) => !(k in listJobsFields) && !METADATA_PARAM.test(k));
    if (unknown.length > 0) ctx.addIssue({ code: 'unrecognized_keys', keys: unknown, input: q });
  });

export type ListJobsQueryValues = z.infer<typeof ListJobsQuery>;

export const CancelJobsSchema = z
  .object({
    filter: z
      .object({
        status: z.enum(['PENDING', 'RUNNING']).optional(),
        type: z.string().max(64).optional(),
        created_after: z.string().datetime({ offset: true }).optional(),
        created_before: z.string().datetime({ offset: true }).optional(),
        scheduled: z.boolean().optional(),
        priority: z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX).optional(),
        schedule_id: z.string().uuid().optional(),
        metadata: z
          .record(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), z.string().max(1024))
          .optional()
          .openapi({ description: 'Jobs whose metadata has each of these keys with this string value.' }),
      })
      .strict()
      .openapi({ description: 'Which active jobs to cancel; every field narrows it (`{}`: every active job).' }),
    limit: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(1000)
      .openapi({ description: 'Most jobs cancelled by this call, oldest first; call again while `more` is true.' }),
  })
  .strict()
  .openapi('CancelJobs');
export type CancelJobs = z.infer<typeof CancelJobsSchema>;

export const CancelledJobsSchema = z
  .object({
    cancelled: z.number().int().openapi({ description: 'PENDING jobs now CANCELLED.' }),
    requested: z.number().int().openapi({ description: 'RUNNING jobs asked to stop at their next chunk boundary.' }),
    more: z.boolean().openapi({ description: 'More jobs match: call again to cancel them.' }),
  })
  .openapi('CancelledJobs');

export const IdempotencyHeader = z.object({
  'idempotency-key': z
    .string()
    .optional()
    .openapi({
      // Hono reads request headers in lower case, so the parameter is named in lower case too (HTTP header names are case-insensitive).
      param: { in: 'header' },
      description:
        'The `Idempotency-Key` header: up to 255 visible ASCII characters (a UUID is recommended); remembered for 24 h per tenant.',
    }),
});

export const CreateTenantSchema = z
  .object({ name: z.string().min(1).max(200) })
  .strict()
  .openapi('CreateTenant');

export const CreatedTenantSchema = z
  .object({
    id: z.string().uuid(),
    name: z.string(),
    api_key: z.string().openapi({ description: 'Shown once; only its hash is stored.' }),
    webhook_secret: z.string().openapi({ description: 'Standard Webhooks secret, `whsec_` + base64.' }),
  })
  .openapi('CreatedTenant');

export const HealthSchema = z
  .object({ status: z.string(), checks: z.record(z.string(), z.string()).optional() })
  .openapi('Health');

const SubmissionRateSchema = z
  .object({
    limit: z.number().int().min(1).max(1_000_000).openapi({ description: 'Jobs accepted per window', example: 100 }),
    window_seconds: z.number().int().min(1).max(86_400).openapi({ example: 60 }),
  })
  .strict()
  .openapi('SubmissionRate', {
    description:
      'At most `limit` jobs per `window_seconds`, as a token bucket: a burst of `limit` at once, then one every window / limit.',
  });

const LIMIT_FIELDS = {
  max_running_jobs: z.number().int().min(1).max(1000).nullable().openapi({
    description:
      "Jobs of the tenant running at once across all workers; null: the default (LONGHAUL_TENANT_CONCURRENCY's).",
  }),
  max_pending_jobs: z
    .number()
    .int()
    .min(0)
    .max(100_000_000)
    .nullable()
    .openapi({ description: 'PENDING jobs (queued or scheduled) the tenant may have at once; null: no bound.' }),
  submission_rate: SubmissionRateSchema.nullable().openapi({ description: 'Null: no bound.' }),
};

export const TenantLimitsSchema = z
  .object({ tenant_id: z.string().uuid(), ...LIMIT_FIELDS, updated_at: z.string().datetime().nullable() })
  .openapi('TenantLimits');

export const TenantLimitsPatchSchema = z
  .object({
    max_running_jobs: LIMIT_FIELDS.max_running_jobs.optional(),
    max_pending_jobs: LIMIT_FIELDS.max_pending_jobs.optional(),
    submission_rate: LIMIT_FIELDS.submission_rate.optional(),
  })
  .strict()
  .refine((o) => Object.keys(o).length > 0, { message: 'name at least one limit to change' })
  .openapi('TenantLimitsPatch', {
    description: 'The limits to change: an absent field keeps its value, null lifts the limit.',
  });

export const TenantIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60' }),
});

const ScheduleJobSchema = z
  .object({
    type: z.string().min(1).max(64).openapi({ example: 'report' }),
    input: JsonValue.openapi({ example: { chunks: 10, chunk_ms: 100 } }),
    metadata: z.record(z.string(), z.unknown()).nullable().optional(),
    callback_url: z.string().max(2048).nullable().optional(),
  })
  .strict()
  .openapi('ScheduleJob', { description: 'The job each occurrence creates, as POST /v1/jobs takes it.' });

const SCHEDULE_FIELDS = {
  name: z.string().min(1).max(200).openapi({ example: 'nightly-report' }),
  cron: z.string().min(1).max(200).openapi({
    description:
      'Five fields (minute hour day-of-month month day-of-week), or six with seconds first; `@daily` and the like. Read in `timezone`.',
    example: '0 2 * * *',
  }),
  timezone: z.string().min(1).max(64).openapi({ description: 'IANA time zone', example: 'Europe/Berlin' }),
  job: ScheduleJobSchema,
  overlap: z.enum(['skip', 'allow']).openapi({
    description: '`skip`: an occurrence creates nothing while the last job it created is PENDING or RUNNING.',
  }),
};

export const CreateScheduleSchema = z
  .object({
    ...SCHEDULE_FIELDS,
    timezone: SCHEDULE_FIELDS.timezone.default('UTC'),
    overlap: SCHEDULE_FIELDS.overlap.default('skip'),
  })
  .strict()
  .openapi('CreateSchedule');
export type CreateSchedule = z.infer<typeof CreateScheduleSchema>;

export const UpdateScheduleSchema = z
  .object({
    name: SCHEDULE_FIELDS.name.optional(),
    cron: SCHEDULE_FIELDS.cron.optional(),
    timezone: SCHEDULE_FIELDS.timezone.optional(),
    job: ScheduleJobSchema.optional(),
    overlap: SCHEDULE_FIELDS.overlap.optional(),
  })
  .strict()
  .refine((o) => Object.keys(o).length > 0, { message: 'name at least one field to change' })
  .openapi('UpdateSchedule', { description: 'The fields to change; `job` is replaced whole.' });
export type UpdateSchedule = z.infer<typeof UpdateScheduleSchema>;

export const ScheduleSchema = z
  .object({
    id: z.string().uuid(),
    name: z.string(),
    cron: z.string(),
    timezone: z.string(),
    job: z.object({
      type: z.string(),
      input: PresentJson,
      metadata: PresentJson,
      callback_url: z.string().nullable(),
    }),
    overlap: z.enum(['skip', 'allow']),
    paused: z.boolean(),
    next_fire_at: z
      .string()
      .datetime()
      .nullable()
      .openapi({ description: 'The next occurrence owed; null while paused' }),
    last_fire_at: z.string().datetime().nullable(),
    last_job_id: z.string().uuid().nullable().openapi({ description: 'The last job an occurrence created' }),
    last_outcome: z
      .enum(['created', 'skipped'])
      .nullable()
      .openapi({ description: 'What the last occurrence did (`skipped`: overlap, the last job unfinished)' }),
    created_at: z.string().datetime(),
    updated_at: z.string().datetime(),
  })
  .openapi('Schedule');

export const ScheduleListSchema = z
  .object({ data: z.array(ScheduleSchema), next_cursor: z.string().nullable() })
  .openapi('ScheduleList');

export const ScheduleIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60' }),
});

export const ListSchedulesQuery = z.object(PageQueryFields);
