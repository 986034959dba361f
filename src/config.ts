/**
 * The one place that reads `process.env`. Every setting is parsed and validated once, at start-up,
 * into one typed object; a bad value stops start-up with a message naming the variable.
 */
import path from 'node:path';
import { z } from 'zod';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const seconds = (min = 0) => z.coerce.number().min(min);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0),
);
/** `key=value,…` as the OTEL_* variables write it (values URL-encoded). */
const keyValues = z.string().transform((s, ctx) => {
  const out: Record<string, string> = {};
  for (const part of s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not key=value` });
      return z.NEVER;
    }
    out[decodeURIComponent(part.slice(0, eq).trim())] = decodeURIComponent(part.slice(eq + 1).trim());
  }
  return out;
});
/** The samplers of OTEL_TRACES_SAMPLER that longhaul knows. */
const SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
/** The OTLP transports of OTEL_EXPORTER_OTLP_PROTOCOL that longhaul offers. */
const PROTOCOLS = ['http/protobuf', 'http/json'] as const;
const durationList = z.string().transform((s, ctx) => {
  const out: number[] = [];
  for (const part of s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const n = Number(part);
    if (!Number.isFinite(n) || n < 0) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not a number of seconds` });
      return z.NEVER;
    }
    out.push(n);
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'needs at least one delay' });
    return z.NEVER;
  }
  return out;
});

/**
 * Each variable: its parser, its default and its description, from which CONFIG_VARIABLES (and so the
 * table in docs/configuration.md) is made. `shownDefault` stands in for a default that is no plain value.
 */
const envSchema = z.object({
  PORT: int(0, 65535).default(3000).describe('HTTP port of the API (`0`: any free port).'),
  HOST: z
    .string()
    .min(1)
    .default('127.0.0.1')
    .describe('Interface the API listens on (`0.0.0.0` in the Docker image).'),
  DATABASE_URL: z
    .string()
    .url()
    .optional()
    .describe('PostgreSQL to use. Unset: an embedded PostgreSQL under `LONGHAUL_DATA_DIR`.'),
  LONGHAUL_DATA_DIR: z
    .string()
    .min(1)
    .default('./.longhaul')
    .describe("Embedded PostgreSQL's data, and `default-api-key`. Survives restarts."),
  LONGHAUL_EMBEDDED_PG_PORT: int(1, 65535)
    .default(54329)
    .describe('Port of the embedded PostgreSQL (127.0.0.1 only); local processes share it.'),
  LONGHAUL_PG_POOL_MAX: int(2, 1000).default(20).describe('Connections per process (pg-boss gets half as many again).'),
  LONGHAUL_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`.'),
  LONGHAUL_METRICS_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe(
      'Bearer token `/metrics` requires (16+ characters); unset, `/metrics` is open to whoever reaches its port.',
    ),
  LONGHAUL_METRICS_PORT: int(0, 65535)
    .optional()
    .describe(
      'Serve `/metrics` (and `/healthz`) on this port instead of the API port, in every role, worker included (`0`: any free port).',
    ),
  LONGHAUL_METRICS_HOST: z.string().min(1).optional().meta({
    description: 'Interface the metrics port listens on.',
    shownDefault: '`HOST`',
  }),
  LONGHAUL_METRICS_REFRESH_SECONDS: seconds(0)
    .default(10)
    .describe(
      'How often the gauges read from the database (jobs by status, dead letters, workers, breakers, alerts) are read again in the background; scrapes serve the last read (`0`: every scrape reads).',
    ),
  LONGHAUL_METRICS_TENANT_LABELS: bool
    .default(false)
    .describe(
      "Label metrics with tenants' data (a webhook endpoint's id on the per-endpoint breaker gauge); off, no series names a tenant.",
    ),
  LONGHAUL_ADMIN_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('Enables the admin API (`/v1/admin/…`) for this bearer token (16+ characters).'),
  LONGHAUL_PUBLIC_URL: z.string().url().optional().meta({
    description: 'Base URL in the links the service hands out (signed downloads, streams).',
    shownDefault: '`http://HOST:PORT`',
  }),
  LONGHAUL_BODY_LIMIT_BYTES: int(1024)
    .default(1024 * 1024)
    .describe('Largest request body; larger ones get 413.'),
  LONGHAUL_JSON_MAX_DEPTH: int(2, 1000)
    .default(64)
    .describe('Deepest nesting of objects and arrays in a JSON body (the body itself is 1); deeper gets 422.'),
  LONGHAUL_JSON_MAX_MEMBERS: int(1)
    .default(10_000)
    .describe('Most keys in one object, or items in one array, of a JSON body; more gets 422.'),
  LONGHAUL_JSON_MAX_STRING_LENGTH: int(16)
    .default(256 * 1024)
    .describe('Longest string or key in a JSON body, in UTF-16 code units once unescaped; longer gets 422.'),
  LONGHAUL_HEADERS_TIMEOUT_SECONDS: seconds(0.1)
    .default(10)
    .describe(
      'A request whose headers have not all arrived this long after it began is answered 408 and closed (at most the request timeout).',
    ),
  LONGHAUL_REQUEST_TIMEOUT_SECONDS: seconds(0.1).default(30).describe('The same for the whole request, body included.'),
  LONGHAUL_IDEMPOTENCY_TTL_SECONDS: int(60)
    .default(24 * 60 * 60)
    .describe('How long an `Idempotency-Key` is remembered per tenant.'),
  LONGHAUL_SCHEDULE_HORIZON_SECONDS: int(60)
    .default(365 * 24 * 60 * 60)
    .describe('Furthest ahead a job may be scheduled (`run_at`, `delay_seconds`); later gets 422.'),
  LONGHAUL_AUTH_CACHE_SECONDS: seconds(0)
    .default(30)
    .describe('How long an API-key lookup is cached; a revoked key stops working within this.'),
  LONGHAUL_CALLBACK_ALLOW: list
    .default([])
    .describe(
      'Comma-separated hosts, addresses or CIDRs that callbacks may reach over plain http and past the SSRF filter.',
    ),
  LONGHAUL_CORS_ORIGINS: list
    .default([])
    .describe('Comma-separated origins (scheme://host[:port]) whose web pages may call the API (CORS); empty: none.'),
  LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: seconds(1)
    .default(30)
    .describe('How long SIGTERM waits for running work to reach a safe point.'),
  LONGHAUL_JOB_TYPES: list
    .default([])
    .describe('Comma-separated modules (paths or package names) that export more job types.'),
  LONGHAUL_WORKER_CONCURRENCY: int(1, 1000)
    .default(8)
    .describe(
      "Jobs whose code one worker process runs at once. A job's slot frees when its code returns, before its completion commits: a process holds up to twice this many RUNNING jobs.",
    ),
  LONGHAUL_WORKER_BURST_SLOTS: int(0, 1000)
    .default(1)
    .describe(
      'Jobs a worker process whose slots are all taken may start beyond LONGHAUL_WORKER_CONCURRENCY, each only for a tenant with no job running anywhere (see [scheduling](scheduling.md#fairness)). 0: none.',
    ),
  LONGHAUL_TENANT_CONCURRENCY: int(1, 1000)
    .optional()
    .describe(
      'A hard limit on the jobs of one tenant running at once across all workers, for tenants without a max_running_jobs of their own. Unset: none; tenants with waiting jobs share the slots equally.',
    ),
  // Own lease check, so it may be short (tests use 2 s); pg-boss's heartbeat (min 10 s) is only a backstop.
  LONGHAUL_LEASE_SECONDS: seconds(1)
    .default(30)
    .describe('A running job whose worker stops renewing its lease this long is taken over and resumed.'),
  // Lost workers are not failures of the job: takeovers have their own budget, larger than max_attempts.
  LONGHAUL_MAX_LEASE_LOSSES: int(1, 1000)
    .default(10)
    .describe(
      'Takeovers after a lost worker before the job is dead-lettered; they do not spend its `maxAttempts` (see [job types](job-types.md)).',
    ),
  // One pg-boss execution can never outlive 24 h: a longer job runs as a chain of executions.
  LONGHAUL_EXECUTION_BUDGET_SECONDS: seconds(1)
    .max(23 * 60 * 60)
    .default(15 * 60)
    .describe(
      'Longest single execution (at most 23 h); a longer job continues in a new execution from its checkpoint.',
    ),
  LONGHAUL_PENDING_ALERT_SECONDS: int(1)
    .default(5 * 60)
    .describe('Alert when a job has waited this long to start.'),
  LONGHAUL_SCHEDULER_INTERVAL_SECONDS: seconds(0.1)
    .default(1)
    .describe(
      'How often each worker process looks for recurring schedules due (see [scheduling](scheduling.md)); an occurrence fires at most this late.',
    ),
  LONGHAUL_MONITOR_INTERVAL_SECONDS: seconds(0.1)
    .default(10)
    .describe('How often the monitors check for alerts (leases: at least twice per lease).'),
  LONGHAUL_ALERT_WEBHOOK_URL: z
    .string()
    .url()
    .optional()
    .describe(
      'Where operator alerts (`alert.raised` / `alert.cleared`) are POSTed as signed webhooks (besides the log and metrics).',
    ),
  LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: seconds(0.1).default(15).describe('Total time of one webhook delivery attempt.'),
  LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS: seconds(0.1)
    .default(5)
    .describe('Connect timeout (TCP + TLS) of a webhook delivery.'),
  LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: durationList
    .default([5, 300, 1800, 7200, 18000, 36000, 36000])
    .describe('Delays before attempts 2…8; after the last the delivery is dead-lettered.'),
  LONGHAUL_WEBHOOK_JITTER: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.2)
    .describe('± fraction of random jitter on each retry delay.'),
  LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: seconds(0)
    .default(60)
    .describe('Shortest retry delay after a timeout, 429, 502 or 504.'),
  LONGHAUL_WEBHOOK_CONCURRENCY: int(1, 10_000).default(64).describe('Deliveries in flight per process.'),
  LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: int(1, 1000).default(8).describe('Deliveries in flight to one endpoint.'),
  LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS: int(0)
    .default(24 * 60 * 60)
    .describe('After a secret rotation, how long the old secret still signs too.'),
  LONGHAUL_WEBHOOK_LEASE_SECONDS: seconds(1).optional().meta({
    description: 'How long a claimed delivery is reserved for its dispatcher before another may retry it.',
    shownDefault: 'timeout + 30',
  }),
  LONGHAUL_WEBHOOK_POLL_SECONDS: seconds(0.05)
    .default(1)
    .describe("Polling fallback of the dispatcher's LISTEN wake-up."),
  LONGHAUL_ALERT_WEBHOOK_SECRET: z
    .string()
    .startsWith('whsec_', 'must be a Standard Webhooks secret (whsec_ + base64)')
    .optional()
    .describe('`whsec_…` secret that signs the alert webhooks (v1); required with the URL.'),
  LONGHAUL_BREAKER_WINDOW: int(1, 10_000)
    .default(20)
    .describe('Recent deliveries per endpoint the circuit breaker looks at.'),
  LONGHAUL_BREAKER_FAILURE_RATIO: z.coerce
    .number()
    .gt(0)
    .max(1)
    .default(0.5)
    .describe('Failure ratio in that window that opens the breaker.'),
  LONGHAUL_BREAKER_MIN_REQUESTS: int(1)
    .default(5)
    .describe('Deliveries needed in the window before the breaker may open.'),
  LONGHAUL_BREAKER_COOLDOWN_SECONDS: seconds(0)
    .default(30)
    .describe('How long an open breaker waits before a trial delivery.'),
  LONGHAUL_SIGNING_SECRET: z.string().min(32, 'must be at least 32 characters').optional().meta({
    description:
      'Key (32+ characters) for signed download URLs and stream tokens; unset, one is created once in the database.',
    shownDefault: 'generated',
  }),
  LONGHAUL_ARTIFACT_URL_TTL_SECONDS: int(1)
    .default(15 * 60)
    .describe('Lifetime of a signed artifact download URL.'),
  LONGHAUL_ARTIFACT_RETENTION_SECONDS: int(60)
    .default(7 * 24 * 60 * 60)
    .describe('How long job artifacts are kept.'),
  LONGHAUL_JOB_RETENTION_SECONDS: int(60)
    .default(30 * 24 * 60 * 60)
    .describe(
      'How long a finished job (COMPLETED, FAILED, CANCELLED) is kept, with its events, webhook deliveries and attempts; a job whose artifacts are still kept stays until they are gone. Swept hourly by the worker role.',
    ),
  LONGHAUL_STREAM_TOKEN_TTL_SECONDS: int(1)
    .default(5 * 60)
    .describe('Lifetime of a browser stream token.'),
  LONGHAUL_CONSOLE_SESSION_SECONDS: int(60)
    .default(12 * 60 * 60)
    .describe('Lifetime of an operator console session (its signed cookie) from sign-in.'),
  LONGHAUL_CONSOLE_OVERVIEW_SECONDS: seconds(0)
    .default(5)
    .describe(
      "How long the console overview's figures, read once, are shown to every view of the same scope (every tenant, or one tenant) before they are read again (`0`: every view reads).",
    ),
  LONGHAUL_STREAM_PING_SECONDS: seconds(0.1)
    .default(15)
    .describe('Event streams are pinged this often; one silent for two intervals is closed.'),
  LONGHAUL_REPORT_DATABASE_URL: z
    .string()
    .url()
    .optional()
    .describe("Database the `report` job reads from (default: longhaul's own)."),
  LONGHAUL_REPORT_SOURCES: list.default(['demo_orders']).describe('Comma-separated tables the `report` job may read.'),
  LONGHAUL_REPORT_CHUNK_SIZE: int(100, 1_000_000)
    .default(10_000)
    .describe('Rows per `report` chunk (one checkpoint each).'),
  LONGHAUL_REPORT_CHECKPOINTS: bool
    .default(true)
    .describe(
      '`false` only to measure checkpoint cost: a `report` reads every chunk in one step, CSV writes unsynced, one commit at the end (a crash restarts it).',
    ),
  OTEL_SDK_DISABLED: bool.default(false).describe('`true` turns tracing off whatever else is set.'),
  OTEL_TRACES_EXPORTER: z
    .enum(['otlp', 'none'])
    .default('otlp')
    .describe('`otlp`: traces go to the OTLP endpoint, when one is set; `none`: tracing is off.'),
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .string()
    .url()
    .optional()
    .describe(
      'OTLP/HTTP base URL of a collector (`/v1/traces` is appended). Tracing is off unless this or the next is set.',
    ),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().url().optional().describe('OTLP/HTTP URL for traces, used as is.'),
  OTEL_EXPORTER_OTLP_PROTOCOL: z
    .enum(PROTOCOLS)
    .default('http/protobuf')
    .describe('How spans are encoded over OTLP/HTTP: `http/protobuf` or `http/json` (gRPC is not offered).'),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: z.enum(PROTOCOLS).optional().describe('The same for traces only; this wins.'),
  OTEL_EXPORTER_OTLP_HEADERS: keyValues
    .optional()
    .describe('Headers sent to the collector, `key=value,…` (values URL-encoded).'),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValues.optional().describe('The same for traces only; these win.'),
  OTEL_BSP_SCHEDULE_DELAY: int(0)
    .default(5000)
    .describe('Longest wait, in ms, before the spans buffered are sent in a batch.'),
  OTEL_BSP_EXPORT_TIMEOUT: int(1).default(30000).describe('Longest a batch may take to send, in ms.'),
  OTEL_BSP_MAX_QUEUE_SIZE: int(1)
    .default(2048)
    .describe('Most spans buffered waiting to be sent; past it new spans are dropped.'),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: int(1)
    .default(512)
    .describe('Most spans in one batch; a full batch is sent at once (at most `OTEL_BSP_MAX_QUEUE_SIZE`).'),
  OTEL_SERVICE_NAME: z.string().min(1).default('longhaul').describe('`service.name` of the spans.'),
  OTEL_RESOURCE_ATTRIBUTES: keyValues.optional().describe('More resource attributes of the spans, `key=value,…`.'),
  OTEL_TRACES_SAMPLER: z
    .enum(SAMPLERS)
    .default('parentbased_always_on')
    .describe(
      '`always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off` or `parentbased_traceidratio`.',
    ),
  OTEL_TRACES_SAMPLER_ARG: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(1)
    .describe('The ratio of the `traceidratio` samplers.'),
  LONGHAUL_SEED_DEFAULT_TENANT: bool.optional().meta({
    description: 'Create the `default` tenant on the first start of an empty database.',
    shownDefault: 'embedded only',
  }),
});

export type Env = z.input<typeof envSchema>;

/** A variable as docs/configuration.md shows it: `default` is the table's cell, ready to print. */
export interface ConfigVariable {
  name: string;
  default: string;
  description: string;
}

/** The default as the table shows it: a value in backticks, or what stands in for none. */
function shownDefault(schema: z.ZodType): string {
  const shown = schema.meta()?.['shownDefault'];
  if (typeof shown === 'string') return shown;
  const value: unknown = schema.parse(undefined);
  if (value === undefined) return 'unset';
  if (Array.isArray(value)) return value.length === 0 ? 'empty' : `\`${value.join(',')}\``;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
    return `\`${String(value)}\``;
  throw new Error('a default that is no plain value needs a shownDefault');
}

/** Every variable longhaul reads, in the schema's order; test/config-docs.test.ts holds docs/configuration.md to it. */
export const CONFIG_VARIABLES: readonly ConfigVariable[] = Object.entries(envSchema.shape).map(([name, schema]) => ({
  name,
  default: shownDefault(schema),
  description: schema.description ?? '',
}));

export interface Config {
  port: number;
  host: string;
  /** Postgres to use; absent means start the embedded server under `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  embeddedPgPort: number;
  poolMax: number;
  logLevel: z.infer<typeof envSchema>['LONGHAUL_LOG_LEVEL'];
  adminToken: string | undefined;
  /**
   * `/metrics`: the bearer token it requires, the port and interface it is served on instead of the
   * API's (undefined: on the API port), and whether series may carry tenants' data as labels.
   */
  metrics: {
    token: string | undefined;
    port: number | undefined;
    host: string;
    tenantLabels: boolean;
    /** Seconds between background reads of the database gauges (0: each scrape reads). */
    refreshSeconds: number;
  };
  /** Base URL used in links the service hands out (Location, signed download URLs). */
  publicUrl: string;
  bodyLimitBytes: number;
  /** What a JSON body may hold, checked before anything else reads it (see src/api/middleware.ts). */
  json: JsonLimits;
  /**
   * A request whose headers (`headersTimeout`) or whole body (`requestTimeout`) have not arrived this long
   * after it began is answered 408 and its connection closed.
   */
  http: { headersTimeoutSeconds: number; requestTimeoutSeconds: number };
  idempotencyTtlSeconds: number;
  /** Furthest ahead a job may be scheduled, in seconds. */
  scheduleHorizonSeconds: number;
  authCacheSeconds: number;
  /** Hosts and CIDRs that callbacks may reach over plain http and despite the SSRF filter. */
  callbackAllow: string[];
  /** Origins whose pages may call the API (CORS); empty: CORS is off. */
  corsOrigins: string[];
  shutdownTimeoutSeconds: number;
  jobTypeModules: string[];
  worker: {
    concurrency: number;
    /** Jobs a full worker may start beyond `concurrency`, each for a tenant with none running anywhere. */
    burstSlots: number;
    /** A hard per-tenant running limit for tenants without their own; undefined: none (fair sharing only). */
    tenantConcurrency: number | undefined;
    leaseSeconds: number;
    /** Takeovers after a lost lease before the job is dead-lettered (they do not spend max_attempts). */
    maxLeaseLosses: number;
    executionBudgetSeconds: number;
    pendingAlertSeconds: number;
    monitorIntervalSeconds: number;
    /** How often recurring schedules are checked for occurrences due. */
    schedulerIntervalSeconds: number;
    alertWebhookUrl: string | undefined;
  };
  webhooks: {
    timeoutSeconds: number;
    connectTimeoutSeconds: number;
    scheduleSeconds: number[];
    jitter: number;
    minBackoffAfterThrottleSeconds: number;
    concurrency: number;
    endpointConcurrency: number;
    secretGraceSeconds: number;
    /** How long a claimed delivery is reserved for its dispatcher; a dead dispatcher's deliveries are retried after it. */
    leaseSeconds: number;
    /** Polling fallback of the dispatcher's LISTEN wake-up. */
    pollSeconds: number;
    /** Secret (`whsec_…`) that signs alert webhooks sent to LONGHAUL_ALERT_WEBHOOK_URL. */
    alertSecret: string | undefined;
    breaker: { window: number; failureRatio: number; minRequests: number; cooldownSeconds: number };
  };
  /** Key material for signed URLs and stream tokens; derived from the data dir when not set. */
  signingSecret: string | undefined;
  artifactUrlTtlSeconds: number;
  artifactRetentionSeconds: number;
  /** Finished jobs (with their events and deliveries) are deleted after this long. (Default: 30 days) */
  jobRetentionSeconds: number;
  streamTokenTtlSeconds: number;
  /** Event streams are pinged this often; one that takes no data for two intervals is closed. */
  streamPingSeconds: number;
  /** Lifetime of an operator console session. */
  consoleSessionSeconds: number;
  /** How long the console overview's figures are shown to every view of a scope before they are read again (0: each view reads). */
  consoleOverviewSeconds: number;
  /**
   * `checkpoints: false` (LONGHAUL_REPORT_CHECKPOINTS, for benchmarks only) reads all chunks of a report in one
   * step with unsynced CSV writes and commits once at the end: a crash restarts the report. (Default: true)
   */
  report: { databaseUrl: string | undefined; sources: string[]; chunkSize: number; checkpoints: boolean };
  /** Create a `default` tenant on first start of an empty database (default: only when embedded). */
  seedDefaultTenant: boolean;
  /** OpenTelemetry tracing from the standard OTEL_* variables; `url` undefined: off. */
  tracing: TracingSettings;
}

/** OpenTelemetry tracing, from the standard OTEL_* variables (src/observability/tracing.ts). */
export interface TracingSettings {
  /** Where spans are sent (OTLP over HTTP); undefined: tracing is off. */
  url: string | undefined;
  /** How they are encoded: OTLP protobuf (the OpenTelemetry default) or OTLP JSON. */
  protocol: 'http/protobuf' | 'http/json';
  headers: Record<string, string>;
  serviceName: string;
  resourceAttributes: Record<string, string>;
  sampler:
    | 'always_on'
    | 'always_off'
    | 'traceidratio'
    | 'parentbased_always_on'
    | 'parentbased_always_off'
    | 'parentbased_traceidratio';
  /** The ratio of the `traceidratio` samplers. */
  samplerArg: number;
  /** The batch span processor's settings (OTEL_BSP_*), in ms and spans. */
  batch: {
    scheduledDelayMillis: number;
    exportTimeoutMillis: number;
    maxQueueSize: number;
    maxExportBatchSize: number;
  };
}

export interface JsonLimits {
  /** Most nested objects and arrays, the body itself counting as one. */
  maxDepth: number;
  /** Most keys in one object, or items in one array. */
  maxMembers: number;
  /** Longest string or key, in UTF-16 code units. */
  maxStringLength: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses an environment into a Config; throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const cleaned: Record<string, string> = {};
  for (const { name: key } of CONFIG_VARIABLES) {
    const v = env[key];
    if (v !== undefined && v !== '') cleaned[key] = v;
  }
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? '?');
      return `  ${name}=${JSON.stringify(cleaned[name] ?? '')}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.LONGHAUL_ALERT_WEBHOOK_URL !== undefined && e.LONGHAUL_ALERT_WEBHOOK_SECRET === undefined) {
    throw new ConfigError(
      'invalid configuration:\n  LONGHAUL_ALERT_WEBHOOK_SECRET: required when LONGHAUL_ALERT_WEBHOOK_URL is set (alerts are signed)',
    );
  }
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.LONGHAUL_DATA_DIR),
    embeddedPgPort: e.LONGHAUL_EMBEDDED_PG_PORT,
    poolMax: e.LONGHAUL_PG_POOL_MAX,
    logLevel: e.LONGHAUL_LOG_LEVEL,
    adminToken: e.LONGHAUL_ADMIN_TOKEN,
    metrics: {
      token: e.LONGHAUL_METRICS_TOKEN,
      port: e.LONGHAUL_METRICS_PORT,
      host: e.LONGHAUL_METRICS_HOST ?? e.HOST,
      tenantLabels: e.LONGHAUL_METRICS_TENANT_LABELS,
      refreshSeconds: e.LONGHAUL_METRICS_REFRESH_SECONDS,
    },
    publicUrl: (e.LONGHAUL_PUBLIC_URL ?? `http://${e.HOST === '0.0.0.0' ? '127.0.0.1' : e.HOST}:${e.PORT}`).replace(
      /\/$/,
      '',
    ),
    bodyLimitBytes: e.LONGHAUL_BODY_LIMIT_BYTES,
    json: {
      maxDepth: e.LONGHAUL_JSON_MAX_DEPTH,
      maxMembers: e.LONGHAUL_JSON_MAX_MEMBERS,
      maxStringLength: e.LONGHAUL_JSON_MAX_STRING_LENGTH,
    },
    http: {
      // Node's server refuses a headers timeout longer than the request timeout (the headers are part of the request).
      headersTimeoutSeconds: Math.min(e.LONGHAUL_HEADERS_TIMEOUT_SECONDS, e.LONGHAUL_REQUEST_TIMEOUT_SECONDS),
      requestTimeoutSeconds: e.LONGHAUL_REQUEST_TIMEOUT_SECONDS,
    },
    idempotencyTtlSeconds: e.LONGHAUL_IDEMPOTENCY_TTL_SECONDS,
    scheduleHorizonSeconds: e.LONGHAUL_SCHEDULE_HORIZON_SECONDS,
    authCacheSeconds: e.LONGHAUL_AUTH_CACHE_SECONDS,
    callbackAllow: e.LONGHAUL_CALLBACK_ALLOW,
    corsOrigins: e.LONGHAUL_CORS_ORIGINS,
    shutdownTimeoutSeconds: e.LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS,
    jobTypeModules: e.LONGHAUL_JOB_TYPES,
    worker: {
      concurrency: e.LONGHAUL_WORKER_CONCURRENCY,
      burstSlots: e.LONGHAUL_WORKER_BURST_SLOTS,
      tenantConcurrency: e.LONGHAUL_TENANT_CONCURRENCY,
      leaseSeconds: e.LONGHAUL_LEASE_SECONDS,
      maxLeaseLosses: e.LONGHAUL_MAX_LEASE_LOSSES,
      executionBudgetSeconds: e.LONGHAUL_EXECUTION_BUDGET_SECONDS,
      pendingAlertSeconds: e.LONGHAUL_PENDING_ALERT_SECONDS,
      monitorIntervalSeconds: e.LONGHAUL_MONITOR_INTERVAL_SECONDS,
      schedulerIntervalSeconds: e.LONGHAUL_SCHEDULER_INTERVAL_SECONDS,
      alertWebhookUrl: e.LONGHAUL_ALERT_WEBHOOK_URL,
    },
    webhooks: {
      timeoutSeconds: e.LONGHAUL_WEBHOOK_TIMEOUT_SECONDS,
      connectTimeoutSeconds: e.LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS,
      scheduleSeconds: e.LONGHAUL_WEBHOOK_SCHEDULE_SECONDS,
      jitter: e.LONGHAUL_WEBHOOK_JITTER,
      minBackoffAfterThrottleSeconds: e.LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS,
      concurrency: e.LONGHAUL_WEBHOOK_CONCURRENCY,
      endpointConcurrency: e.LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY,
      secretGraceSeconds: e.LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS,
      // The lease must outlast one attempt (its total timeout) with a margin for recording the result.
      leaseSeconds: Math.max(
        e.LONGHAUL_WEBHOOK_LEASE_SECONDS ?? e.LONGHAUL_WEBHOOK_TIMEOUT_SECONDS + 30,
        e.LONGHAUL_WEBHOOK_TIMEOUT_SECONDS + 1,
      ),
      pollSeconds: e.LONGHAUL_WEBHOOK_POLL_SECONDS,
      alertSecret: e.LONGHAUL_ALERT_WEBHOOK_SECRET,
      breaker: {
        window: e.LONGHAUL_BREAKER_WINDOW,
        failureRatio: e.LONGHAUL_BREAKER_FAILURE_RATIO,
        minRequests: e.LONGHAUL_BREAKER_MIN_REQUESTS,
        cooldownSeconds: e.LONGHAUL_BREAKER_COOLDOWN_SECONDS,
      },
    },
    signingSecret: e.LONGHAUL_SIGNING_SECRET,
    artifactUrlTtlSeconds: e.LONGHAUL_ARTIFACT_URL_TTL_SECONDS,
    artifactRetentionSeconds: e.LONGHAUL_ARTIFACT_RETENTION_SECONDS,
    jobRetentionSeconds: e.LONGHAUL_JOB_RETENTION_SECONDS,
    streamTokenTtlSeconds: e.LONGHAUL_STREAM_TOKEN_TTL_SECONDS,
    streamPingSeconds: e.LONGHAUL_STREAM_PING_SECONDS,
    consoleSessionSeconds: e.LONGHAUL_CONSOLE_SESSION_SECONDS,
    consoleOverviewSeconds: e.LONGHAUL_CONSOLE_OVERVIEW_SECONDS,
    report: {
      databaseUrl: e.LONGHAUL_REPORT_DATABASE_URL,
      sources: e.LONGHAUL_REPORT_SOURCES,
      chunkSize: e.LONGHAUL_REPORT_CHUNK_SIZE,
      checkpoints: e.LONGHAUL_REPORT_CHECKPOINTS,
    },
    seedDefaultTenant: e.LONGHAUL_SEED_DEFAULT_TENANT ?? e.DATABASE_URL === undefined,
    tracing: {
      url:
        e.OTEL_SDK_DISABLED || e.OTEL_TRACES_EXPORTER === 'none'
          ? undefined
          : (e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
            (e.OTEL_EXPORTER_OTLP_ENDPOINT === undefined
              ? undefined
              : `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces`)),
      protocol: e.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? e.OTEL_EXPORTER_OTLP_PROTOCOL,
      headers: { ...e.OTEL_EXPORTER_OTLP_HEADERS, ...e.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
      serviceName: e.OTEL_SERVICE_NAME,
      resourceAttributes: e.OTEL_RESOURCE_ATTRIBUTES ?? {},
      sampler: e.OTEL_TRACES_SAMPLER,
      samplerArg: e.OTEL_TRACES_SAMPLER_ARG,
      batch: {
        scheduledDelayMillis: e.OTEL_BSP_SCHEDULE_DELAY,
        exportTimeoutMillis: e.OTEL_BSP_EXPORT_TIMEOUT,
        maxQueueSize: e.OTEL_BSP_MAX_QUEUE_SIZE,
        maxExportBatchSize: Math.min(e.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, e.OTEL_BSP_MAX_QUEUE_SIZE),
      },
    },
  };
}

/** What the partner commands (`longhaul jobs …`) need: where the service is and the tenant's key; flags win. */
export function clientSettings(env: Record<string, string | undefined> = process.env): {
  url: string | undefined;
  apiKey: string | undefined;
} {
  return { url: env.LONGHAUL_URL || undefined, apiKey: env.LONGHAUL_API_KEY || undefined };
}
