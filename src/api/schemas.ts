/** Zod schemas of the API's bodies and parameters: they validate requests and generate openapi.yaml. */
import { z } from '@hono/zod-openapi';
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

/** One entry of a job's error_history, as src/worker/store.ts settleAttempt() writes it. */
export const AttemptErrorSchema = z
  .object({
    kind: z.enum(['failure', 'lease_lost']).openapi({
      description:
        '`failure`: the attempt failed (it spent one of `max_attempts`). `lease_lost`: its worker was lost (killed, hung or cut off past its lease) and another took the job over from its checkpoint; this spends no attempt, and only LONGHAUL_MAX_LEASE_LOSSES of them dead-letter the job.',
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
    created_at: z.string().datetime(),
    started_at: z.string().datetime().nullable(),
    updated_at: z.string().datetime(),
    finished_at: z.string().datetime().nullable(),
  })
  .openapi('Job');

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
  })
  .strict()
  .openapi('CreateJob');
export type CreateJob = z.infer<typeof CreateJobSchema>;

export const JobListSchema = z
  .object({
    data: z.array(JobSchema),
    next_cursor: z.string().nullable(),
  })
  .openapi('JobList');

export const JobIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60' }),
});

export const ListJobsQuery = z.object({
  status: JobStatusSchema.optional().openapi({ param: { name: 'status', in: 'query' } }),
  type: z
    .string()
    .max(64)
    .optional()
    .openapi({ param: { name: 'type', in: 'query' } }),
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
});

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
