/**
 * Accepting jobs as a partner asks for them: each request checked against its type (schema, check,
 * time limits), the callback allow-list and its Idempotency-Key, then submitted. Refusals are outcomes
 * named by the problem type the API answers them with (src/api/routes/jobs.ts maps them); POST
 * /v1/jobs, its fast lane, the batch and the schedules all accept through here, so they answer alike.
 */
import type { Config } from '../config.ts';
import type { Metrics } from '../observability/metrics.ts';
import { currentContext } from '../observability/tracing.ts';
import type { Tenant } from '../tenants/repository.ts';
import type { LimitedTenants, Verdict } from '../tenants/limits.ts';
import { callbackUrlProblem, type CallbackAllowList } from '../webhooks/allowlist.ts';
import { DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, type AnyJobType, type Json } from '../../packages/sdk/src/index.ts';
import { fingerprint, validateKey, type IdempotencyRequest } from './idempotency.ts';
import { asCreated, toResource, type JobResource, type JobRow } from './model.ts';
import type { JobTypeRegistry } from './registry.ts';
import type { BatchJob, JobSubmitter } from './submit.ts';

/** A job as a request asks for it (the body of POST /v1/jobs, one job of a batch, a schedule's job). */
export interface JobRequest {
  type: string;
  input?: unknown;
  metadata?: unknown;
  callback_url?: string | undefined;
  run_at?: string | undefined;
  delay_seconds?: number | undefined;
  priority?: number | undefined;
  timeout_seconds?: number | undefined;
  expire_after_seconds?: number | undefined;
}

/** A field a refused request got wrong, and why; `field` is a path such as `input.chunks`. */
export interface FieldIssue {
  field: string;
  message: string;
}

/** Why a request was refused, each kind named as the problem type it is answered with. */
export type Refusal =
  | {
      kind:
        'unknown-job-type' | 'validation-error' | 'bad-request' | 'idempotency-key-in-use' | 'idempotency-key-reused';
      detail: string;
      errors?: FieldIssue[];
    }
  /** Past one of the tenant's limits (src/tenants/limits.ts). */
  | { kind: 'limited'; verdict: Verdict };

/** What accepting needs of the service. */
export interface AcceptDeps {
  config: Pick<Config, 'scheduleHorizonSeconds'>;
  metrics: Pick<Metrics, 'jobsSubmitted'>;
  registry: JobTypeRegistry;
  submitter: JobSubmitter;
  limitedTenants?: LimitedTenants | undefined;
}

/** When a job may start, its priority and its time limits, as a submission asks for them. */
export interface JobTiming {
  scheduledFor: Date | null;
  priority: number;
  timeoutSeconds: number | null;
  expireAfterSeconds: number | null;
}

/** A request checked: its type, its input as the type parsed it, its callback and timing. */
export interface CheckedJob {
  kind: 'checked';
  type: AnyJobType;
  input: Json;
  callbackUrl: string | null;
  timing: JobTiming;
}

const invalid = (field: string, message: string, detail = `${field} ${message}`): Refusal => ({
  kind: 'validation-error',
  detail,
  errors: [{ field, message }],
});

/**
 * The timing fields checked against each other, the scheduling horizon and the job type's maxima, with
 * the type's defaults filled in; a refusal naming the field if not.
 */
export function checkTiming(
  body: Pick<JobRequest, 'run_at' | 'delay_seconds' | 'priority' | 'timeout_seconds' | 'expire_after_seconds'>,
  type: AnyJobType,
  horizonSeconds: number,
  now = Date.now(),
): JobTiming | Refusal {
  if (body.run_at !== undefined && body.delay_seconds !== undefined)
    return invalid('delay_seconds', 'cannot be given together with run_at');
  let scheduledFor: Date | null = null;
  if (body.run_at !== undefined) {
    const at = Date.parse(body.run_at);
    if (Number.isNaN(at)) return invalid('run_at', 'is not a real instant (RFC 3339)');
    if (at - now > horizonSeconds * 1000)
      return invalid('run_at', `is more than ${horizonSeconds} seconds ahead (LONGHAUL_SCHEDULE_HORIZON_SECONDS)`);
    scheduledFor = new Date(at);
  } else if (body.delay_seconds !== undefined && body.delay_seconds > 0) {
    if (body.delay_seconds > horizonSeconds)
      return invalid('delay_seconds', `is more than ${horizonSeconds} (LONGHAUL_SCHEDULE_HORIZON_SECONDS)`);
    scheduledFor = new Date(now + body.delay_seconds * 1000);
  }
  const over = (field: string, asked: number | undefined, max: number | undefined): Refusal | undefined =>
    asked !== undefined && max !== undefined && asked > max
      ? invalid(field, `is more than the "${type.name}" job type's maximum of ${max}`)
      : undefined;
  const refused =
    over('timeout_seconds', body.timeout_seconds, type.maxTimeoutSeconds) ??
    over('expire_after_seconds', body.expire_after_seconds, type.maxExpireAfterSeconds);
  if (refused !== undefined) return refused;
  return {
    scheduledFor,
    priority: body.priority ?? 0,
    timeoutSeconds: body.timeout_seconds ?? type.timeoutSeconds ?? null,
    expireAfterSeconds: body.expire_after_seconds ?? type.expireAfterSeconds ?? null,
  };
}

/** The job a request asks for, checked against its type (schema, check, time limits) and the callback allow-list. */
export async function checkJob(
  registry: JobTypeRegistry,
  allow: CallbackAllowList,
  horizonSeconds: number,
  tenant: Tenant,
  body: JobRequest,
): Promise<CheckedJob | Refusal> {
  const type = registry.get(body.type);
  if (type === undefined)
    return {
      kind: 'unknown-job-type',
      detail: `no job type "${body.type}"; known types: ${registry.names().join(', ')}`,
      errors: [{ field: 'type', message: 'unknown job type' }],
    };
  const parsed = type.input.safeParse(body.input);
  if (!parsed.success)
    return {
      kind: 'validation-error',
      detail: `input does not match the "${type.name}" schema`,
      errors: parsed.error.issues.map((i) => ({
        field: ['input', ...i.path.map(String)].join('.'),
        message: i.message,
      })),
    };
  const extra = (await type.check?.(parsed.data, { tenant: { id: tenant.id, name: tenant.name } })) ?? [];
  if (extra.length > 0)
    return {
      kind: 'validation-error',
      detail: `input is not valid for "${type.name}"`,
      errors: extra.map((e) => ({ ...e, field: `input.${e.field}` })),
    };
  const timing = checkTiming(body, type, horizonSeconds);
  if ('kind' in timing) return timing;
  const problem = body.callback_url === undefined ? undefined : callbackUrlProblem(body.callback_url, allow);
  if (problem !== undefined) return invalid('callback_url', problem);
  return { kind: 'checked', type, input: parsed.data as Json, callbackUrl: body.callback_url ?? null, timing };
}

/** A job accepted by POST /v1/jobs: the job, whether it is a replay of an earlier request, and the tenant's limits. */
export interface Accepted {
  kind: 'accepted';
  job: JobResource;
  replayed: boolean;
  limits?: Verdict | undefined;
}

/** The job a request with an Idempotency-Key created before, if the key still holds it: its replay. */
async function storedReplay(
  submitter: JobSubmitter,
  tenantId: string,
  idempotency: IdempotencyRequest | null,
): Promise<JobRow | undefined> {
  return idempotency === null ? undefined : submitter.storedReplay(tenantId, idempotency);
}

/** One job: its Idempotency-Key, type and input checked, then submitted. */
export async function acceptJob(
  deps: AcceptDeps,
  allow: CallbackAllowList,
  tenant: Tenant,
  body: JobRequest,
  rawKey: string | undefined,
): Promise<Accepted | Refusal> {
  if (rawKey !== undefined) {
    const bad = validateKey(rawKey);
    if (bad !== undefined)
      return {
        kind: 'bad-request',
        detail: `Idempotency-Key ${bad}`,
        errors: [{ field: 'Idempotency-Key', message: bad }],
      };
  }
  const idempotency = rawKey === undefined ? null : { key: rawKey, fingerprint: fingerprint(body) };
  const checked = await checkJob(deps.registry, allow, deps.config.scheduleHorizonSeconds, tenant, body);
  if (checked.kind !== 'checked') {
    // A repeat of a request that created a job is answered as before, even if it would not be accepted now.
    const stored = await storedReplay(deps.submitter, tenant.id, idempotency);
    return stored === undefined ? checked : { kind: 'accepted', job: toResource(asCreated(stored)), replayed: true };
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
      return {
        kind: 'idempotency-key-in-use',
        detail: 'a request with this Idempotency-Key is still being processed; retry later',
      };
    case 'key-reused':
      return {
        kind: 'idempotency-key-reused',
        detail: 'this Idempotency-Key was already used with a different request body',
      };
    case 'limited':
      return outcome;
    case 'replayed':
      return { kind: 'accepted', job: toResource(asCreated(outcome.job)), replayed: true };
    case 'created':
      deps.metrics.jobsSubmitted.inc({ type: type.name });
      return { kind: 'accepted', job: toResource(outcome.job), replayed: false, limits: outcome.limits };
  }
}

/** A batch accepted: each job (created or replayed, in order) and the tenant's limits. */
export interface AcceptedBatch {
  kind: 'accepted';
  jobs: Array<{ job: BatchJob; replayed: boolean }>;
  limits: Verdict | undefined;
}

/**
 * A batch: every job checked as acceptJob checks one (its problems gathered, named `jobs.INDEX.FIELD`,
 * into one refusal), then all submitted in one transaction, or none.
 */
export async function acceptJobs(
  deps: AcceptDeps,
  allow: CallbackAllowList,
  tenant: Tenant,
  jobs: Array<JobRequest & { idempotency_key?: string | undefined }>,
): Promise<AcceptedBatch | Refusal> {
  const errors: FieldIssue[] = [];
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
      const c = await checkJob(deps.registry, allow, deps.config.scheduleHorizonSeconds, tenant, body);
      if (c.kind === 'checked')
        return { ...c, kind: 'new' as const, idempotency, metadata: (body.metadata ?? null) as Json };
      // A repeat of a job that was created is replayed even if it would not be accepted now (as POST /v1/jobs).
      const stored = await storedReplay(deps.submitter, tenant.id, idempotency);
      if (stored !== undefined) return { kind: 'stored' as const, job: asCreated(stored) };
      if (c.kind !== 'limited')
        errors.push(
          ...(c.errors ?? [{ field: 'type', message: c.detail }]).map((e) => ({ ...e, field: at + e.field })),
        );
      return undefined;
    }),
  );
  if (errors.length > 0)
    return {
      kind: 'validation-error',
      detail: `${new Set(errors.map((e) => e.field.split('.')[1])).size} of the jobs are not valid; none was submitted`,
      errors,
    };
  const toSubmit = checked.flatMap((c) => (c?.kind === 'new' ? [c] : []));
  const outcome = await deps.submitter.submitAll(
    tenant.id,
    toSubmit.map((c) => ({
      tenantId: tenant.id,
      type: c.type.name,
      input: c.input,
      metadata: c.metadata,
      callbackUrl: c.callbackUrl,
      maxAttempts: c.type.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      backoff: c.type.backoff ?? DEFAULT_BACKOFF,
      idempotency: c.idempotency,
      ...c.timing,
    })),
    { limited: (await deps.limitedTenants?.has(tenant.id)) ?? false },
  );
  switch (outcome.kind) {
    case 'in-flight':
      return {
        kind: 'idempotency-key-in-use',
        detail: `the idempotency_key of ${outcome.indexes.map((i) => `jobs.${i}`).join(', ')} is held by a submission still being processed; retry later`,
        errors: outcome.indexes.map((i) => ({
          field: `jobs.${i}.idempotency_key`,
          message: 'in use by a submission still being processed',
        })),
      };
    case 'key-reused':
      return {
        kind: 'idempotency-key-reused',
        detail: 'idempotency_key already used with a different job; none was submitted',
        errors: outcome.indexes.map((i) => ({
          field: `jobs.${i}.idempotency_key`,
          message: 'already used with a different job',
        })),
      };
    case 'limited':
      return outcome;
    case 'accepted': {
      const submitted = outcome.outcomes.values();
      const accepted = checked.map((c) => {
        if (c?.kind === 'stored') return { job: c.job, replayed: true };
        const o = submitted.next().value;
        if (o === undefined) throw new Error('batch lost a job');
        if (o.kind === 'created') deps.metrics.jobsSubmitted.inc({ type: o.job.type });
        return { job: o.job, replayed: o.kind === 'replayed' };
      });
      return { kind: 'accepted', jobs: accepted, limits: outcome.limits };
    }
  }
}
