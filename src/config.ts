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

/** Each variable, its parser and its default. The table in docs/configuration.md mirrors this. */
const envSchema = z.object({
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATABASE_URL: z.string().url().optional(),
  LONGHAUL_DATA_DIR: z.string().min(1).default('./.longhaul'),
  LONGHAUL_EMBEDDED_PG_PORT: int(1, 65535).default(54329),
  LONGHAUL_PG_POOL_MAX: int(2, 1000).default(20),
  LONGHAUL_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LONGHAUL_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  LONGHAUL_PUBLIC_URL: z.string().url().optional(),
  LONGHAUL_BODY_LIMIT_BYTES: int(1024).default(1024 * 1024),
  LONGHAUL_IDEMPOTENCY_TTL_SECONDS: int(60).default(24 * 60 * 60),
  LONGHAUL_AUTH_CACHE_SECONDS: seconds(0).default(30),
  LONGHAUL_CALLBACK_ALLOW: list.default([]),
  LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: seconds(1).default(30),
  LONGHAUL_JOB_TYPES: list.default([]),
  LONGHAUL_WORKER_CONCURRENCY: int(1, 1000).default(8),
  LONGHAUL_TENANT_CONCURRENCY: int(1, 1000).default(4),
  // Own lease check, so it may be short (tests use 2 s); pg-boss's heartbeat (min 10 s) is only a backstop.
  LONGHAUL_LEASE_SECONDS: seconds(1).default(30),
  // One pg-boss execution can never outlive 24 h: a longer job runs as a chain of executions.
  LONGHAUL_EXECUTION_BUDGET_SECONDS: seconds(1)
    .max(23 * 60 * 60)
    .default(15 * 60),
  LONGHAUL_PENDING_ALERT_SECONDS: int(1).default(5 * 60),
  LONGHAUL_MONITOR_INTERVAL_SECONDS: seconds(0.1).default(10),
  LONGHAUL_ALERT_WEBHOOK_URL: z.string().url().optional(),
  LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: seconds(0.1).default(15),
  LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS: seconds(0.1).default(5),
  LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: durationList.default([5, 300, 1800, 7200, 18000, 36000, 36000]),
  LONGHAUL_WEBHOOK_JITTER: z.coerce.number().min(0).max(1).default(0.2),
  LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: seconds(0).default(60),
  LONGHAUL_WEBHOOK_CONCURRENCY: int(1, 10_000).default(64),
  LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: int(1, 1000).default(8),
  LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS: int(0).default(24 * 60 * 60),
  LONGHAUL_WEBHOOK_LEASE_SECONDS: seconds(1).optional(),
  LONGHAUL_WEBHOOK_POLL_SECONDS: seconds(0.05).default(1),
  LONGHAUL_ALERT_WEBHOOK_SECRET: z
    .string()
    .startsWith('whsec_', 'must be a Standard Webhooks secret (whsec_ + base64)')
    .optional(),
  LONGHAUL_BREAKER_WINDOW: int(1, 10_000).default(20),
  LONGHAUL_BREAKER_FAILURE_RATIO: z.coerce.number().gt(0).max(1).default(0.5),
  LONGHAUL_BREAKER_MIN_REQUESTS: int(1).default(5),
  LONGHAUL_BREAKER_COOLDOWN_SECONDS: seconds(0).default(30),
  LONGHAUL_SIGNING_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  LONGHAUL_ARTIFACT_URL_TTL_SECONDS: int(1).default(15 * 60),
  LONGHAUL_ARTIFACT_RETENTION_SECONDS: int(60).default(7 * 24 * 60 * 60),
  LONGHAUL_JOB_RETENTION_SECONDS: int(60).default(30 * 24 * 60 * 60),
  LONGHAUL_STREAM_TOKEN_TTL_SECONDS: int(1).default(5 * 60),
  LONGHAUL_STREAM_PING_SECONDS: seconds(0.1).default(15),
  LONGHAUL_REPORT_DATABASE_URL: z.string().url().optional(),
  LONGHAUL_REPORT_SOURCES: list.default(['demo_orders']),
  LONGHAUL_REPORT_CHUNK_SIZE: int(100, 1_000_000).default(10_000),
  /** Off only to measure what checkpoints cost: a report then reads every chunk in one step and commits once. */
  LONGHAUL_REPORT_CHECKPOINTS: bool.default(true),
  LONGHAUL_SEED_DEFAULT_TENANT: bool.optional(),
});

export type Env = z.input<typeof envSchema>;

/** Every variable longhaul reads; a test checks that docs/configuration.md lists each. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

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
  /** Base URL used in links the service hands out (Location, signed download URLs). */
  publicUrl: string;
  bodyLimitBytes: number;
  idempotencyTtlSeconds: number;
  authCacheSeconds: number;
  /** Hosts and CIDRs that callbacks may reach over plain http and despite the SSRF filter. */
  callbackAllow: string[];
  shutdownTimeoutSeconds: number;
  jobTypeModules: string[];
  worker: {
    concurrency: number;
    tenantConcurrency: number;
    leaseSeconds: number;
    executionBudgetSeconds: number;
    pendingAlertSeconds: number;
    monitorIntervalSeconds: number;
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
  /**
   * `checkpoints: false` (LONGHAUL_REPORT_CHECKPOINTS, for benchmarks only) reads all chunks of a report in one
   * step with unsynced CSV writes and commits once at the end: a crash restarts the report. (Default: true)
   */
  report: { databaseUrl: string | undefined; sources: string[]; chunkSize: number; checkpoints: boolean };
  /** Create a `default` tenant on first start of an empty database (default: only when embedded). */
  seedDefaultTenant: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses an environment into a Config; throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const cleaned: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
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
    publicUrl: (e.LONGHAUL_PUBLIC_URL ?? `http://${e.HOST === '0.0.0.0' ? '127.0.0.1' : e.HOST}:${e.PORT}`).replace(
      /\/$/,
      '',
    ),
    bodyLimitBytes: e.LONGHAUL_BODY_LIMIT_BYTES,
    idempotencyTtlSeconds: e.LONGHAUL_IDEMPOTENCY_TTL_SECONDS,
    authCacheSeconds: e.LONGHAUL_AUTH_CACHE_SECONDS,
    callbackAllow: e.LONGHAUL_CALLBACK_ALLOW,
    shutdownTimeoutSeconds: e.LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS,
    jobTypeModules: e.LONGHAUL_JOB_TYPES,
    worker: {
      concurrency: e.LONGHAUL_WORKER_CONCURRENCY,
      tenantConcurrency: e.LONGHAUL_TENANT_CONCURRENCY,
      leaseSeconds: e.LONGHAUL_LEASE_SECONDS,
      executionBudgetSeconds: e.LONGHAUL_EXECUTION_BUDGET_SECONDS,
      pendingAlertSeconds: e.LONGHAUL_PENDING_ALERT_SECONDS,
      monitorIntervalSeconds: e.LONGHAUL_MONITOR_INTERVAL_SECONDS,
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
    report: {
      databaseUrl: e.LONGHAUL_REPORT_DATABASE_URL,
      sources: e.LONGHAUL_REPORT_SOURCES,
      chunkSize: e.LONGHAUL_REPORT_CHUNK_SIZE,
      checkpoints: e.LONGHAUL_REPORT_CHECKPOINTS,
    },
    seedDefaultTenant: e.LONGHAUL_SEED_DEFAULT_TENANT ?? e.DATABASE_URL === undefined,
  };
}
