/**
 * Configuration parsing: the defaults, every variable read into its place, the range of each number, and
 * a start-up error that names every bad variable with its value.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../src/config.ts';

const DEFAULTS: Config = {
  port: 3000,
  host: '127.0.0.1',
  databaseUrl: undefined,
  dataDir: path.resolve('.longhaul'),
  embeddedPgPort: 54329,
  poolMax: 20,
  logLevel: 'info',
  adminToken: undefined,
  metrics: { token: undefined, port: undefined, host: '127.0.0.1', tenantLabels: false, refreshSeconds: 10 },
  publicUrl: 'http://127.0.0.1:3000',
  bodyLimitBytes: 1024 * 1024,
  json: { maxDepth: 64, maxMembers: 10_000, maxStringLength: 256 * 1024 },
  http: { headersTimeoutSeconds: 10, requestTimeoutSeconds: 30 },
  idempotencyTtlSeconds: 86400,
  scheduleHorizonSeconds: 365 * 24 * 60 * 60,
  authCacheSeconds: 30,
  callbackAllow: [],
  corsOrigins: [],
  shutdownTimeoutSeconds: 30,
  jobTypeModules: [],
  worker: {
    concurrency: 8,
    burstSlots: 1,
    tenantConcurrency: undefined,
    leaseSeconds: 30,
    maxLeaseLosses: 10,
    executionBudgetSeconds: 900,
    pendingAlertSeconds: 300,
    monitorIntervalSeconds: 10,
    schedulerIntervalSeconds: 1,
    alertWebhookUrl: undefined,
  },
  webhooks: {
    timeoutSeconds: 15,
    connectTimeoutSeconds: 5,
    scheduleSeconds: [5, 300, 1800, 7200, 18000, 36000, 36000],
    jitter: 0.2,
    minBackoffAfterThrottleSeconds: 60,
    concurrency: 64,
    endpointConcurrency: 8,
    secretGraceSeconds: 86400,
    leaseSeconds: 45,
    pollSeconds: 1,
    alertSecret: undefined,
    breaker: { window: 20, failureRatio: 0.5, minRequests: 5, cooldownSeconds: 30 },
  },
  signingSecret: undefined,
  artifactUrlTtlSeconds: 900,
  artifactRetentionSeconds: 604800,
  jobRetentionSeconds: 2592000,
  streamTokenTtlSeconds: 300,
  streamPingSeconds: 15,
  consoleSessionSeconds: 43200,
  consoleOverviewSeconds: 5,
  report: { databaseUrl: undefined, sources: ['demo_orders'], chunkSize: 10000, checkpoints: true },
  seedDefaultTenant: true,
  tracing: {
    url: undefined,
    protocol: 'http/protobuf',
    headers: {},
    serviceName: 'longhaul',
    resourceAttributes: {},
    sampler: 'parentbased_always_on',
    samplerArg: 1,
    batch: { scheduledDelayMillis: 5000, exportTimeoutMillis: 30000, maxQueueSize: 2048, maxExportBatchSize: 512 },
  },
};

const SECRET = 'whsec_' + Buffer.alloc(32, 1).toString('base64');

/** The message of the ConfigError that loadConfig throws for env. */
function problem(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).name).toBe('ConfigError');
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

describe('configuration', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({})).toEqual(DEFAULTS);
  });

  it('reads every variable into its place', () => {
    const env = {
      PORT: '8080',
      HOST: '10.0.0.5',
      DATABASE_URL: 'postgres://u:p@db:5432/longhaul',
      LONGHAUL_DATA_DIR: '/var/lib/longhaul',
      LONGHAUL_EMBEDDED_PG_PORT: '6000',
      LONGHAUL_PG_POOL_MAX: '7',
      LONGHAUL_LOG_LEVEL: 'debug',
      LONGHAUL_ADMIN_TOKEN: 'a'.repeat(16),
      LONGHAUL_PUBLIC_URL: 'https://jobs.example.com',
      LONGHAUL_BODY_LIMIT_BYTES: '2048',
      LONGHAUL_JSON_MAX_DEPTH: '20',
      LONGHAUL_JSON_MAX_MEMBERS: '21',
      LONGHAUL_JSON_MAX_STRING_LENGTH: '22',
      LONGHAUL_HEADERS_TIMEOUT_SECONDS: '2.5',
      LONGHAUL_REQUEST_TIMEOUT_SECONDS: '3.5',
      LONGHAUL_IDEMPOTENCY_TTL_SECONDS: '3600',
      LONGHAUL_AUTH_CACHE_SECONDS: '0',
      LONGHAUL_CALLBACK_ALLOW: 'receiver.internal,10.0.0.0/8',
      LONGHAUL_CORS_ORIGINS: 'https://app.partner.example',
      LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
      LONGHAUL_METRICS_TOKEN: 'm'.repeat(16),
      LONGHAUL_METRICS_PORT: '9464',
      LONGHAUL_METRICS_HOST: '0.0.0.0',
      LONGHAUL_METRICS_TENANT_LABELS: 'true',
      LONGHAUL_METRICS_REFRESH_SECONDS: '2.5',
      LONGHAUL_JOB_TYPES: './a.ts,pkg-b',
      LONGHAUL_WORKER_CONCURRENCY: '3',
      LONGHAUL_WORKER_BURST_SLOTS: '0',
      LONGHAUL_TENANT_CONCURRENCY: '2',
      LONGHAUL_LEASE_SECONDS: '2',
      LONGHAUL_MAX_LEASE_LOSSES: '5',
      LONGHAUL_EXECUTION_BUDGET_SECONDS: '60',
      LONGHAUL_PENDING_ALERT_SECONDS: '9',
      LONGHAUL_MONITOR_INTERVAL_SECONDS: '0.5',
      LONGHAUL_SCHEDULER_INTERVAL_SECONDS: '0.25',
      LONGHAUL_ALERT_WEBHOOK_URL: 'https://ops.example.com/alerts',
      LONGHAUL_ALERT_WEBHOOK_SECRET: SECRET,
      LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '4',
      LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS: '1.5',
      LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '1,2,3',
      LONGHAUL_WEBHOOK_JITTER: '0',
      LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS: '6',
      LONGHAUL_WEBHOOK_CONCURRENCY: '11',
      LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: '12',
      LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS: '13',
      LONGHAUL_WEBHOOK_LEASE_SECONDS: '14',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.25',
      LONGHAUL_BREAKER_WINDOW: '10',
      LONGHAUL_BREAKER_FAILURE_RATIO: '0.75',
      LONGHAUL_BREAKER_MIN_REQUESTS: '4',
      LONGHAUL_BREAKER_COOLDOWN_SECONDS: '2',
      LONGHAUL_SIGNING_SECRET: 's'.repeat(32),
      LONGHAUL_ARTIFACT_URL_TTL_SECONDS: '16',
      LONGHAUL_ARTIFACT_RETENTION_SECONDS: '600',
      LONGHAUL_JOB_RETENTION_SECONDS: '700',
      LONGHAUL_STREAM_TOKEN_TTL_SECONDS: '17',
      LONGHAUL_STREAM_PING_SECONDS: '0.2',
      LONGHAUL_REPORT_DATABASE_URL: 'postgres://r@src/shop',
      LONGHAUL_REPORT_SOURCES: 'orders,refunds',
      LONGHAUL_REPORT_CHUNK_SIZE: '500',
      LONGHAUL_REPORT_CHECKPOINTS: 'false',
      LONGHAUL_SEED_DEFAULT_TENANT: 'yes',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20t,x-b=a',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-b=b%20c',
      OTEL_SERVICE_NAME: 'jobs',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_SCHEDULE_DELAY: '1000',
      OTEL_BSP_EXPORT_TIMEOUT: '10000',
      OTEL_BSP_MAX_QUEUE_SIZE: '256',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '1024',
    };
    expect(loadConfig(env)).toEqual({
      port: 8080,
      host: '10.0.0.5',
      databaseUrl: 'postgres://u:p@db:5432/longhaul',
      dataDir: '/var/lib/longhaul',
      embeddedPgPort: 6000,
      poolMax: 7,
      logLevel: 'debug',
      adminToken: 'a'.repeat(16),
      metrics: { token: 'm'.repeat(16), port: 9464, host: '0.0.0.0', tenantLabels: true, refreshSeconds: 2.5 },
      publicUrl: 'https://jobs.example.com',
      bodyLimitBytes: 2048,
      json: { maxDepth: 20, maxMembers: 21, maxStringLength: 22 },
      http: { headersTimeoutSeconds: 2.5, requestTimeoutSeconds: 3.5 },
      idempotencyTtlSeconds: 3600,
      scheduleHorizonSeconds: 365 * 24 * 60 * 60,
      authCacheSeconds: 0,
      callbackAllow: ['receiver.internal', '10.0.0.0/8'],
      corsOrigins: ['https://app.partner.example'],
      shutdownTimeoutSeconds: 5,
      jobTypeModules: ['./a.ts', 'pkg-b'],
      worker: {
        concurrency: 3,
        burstSlots: 0,
        tenantConcurrency: 2,
        leaseSeconds: 2,
        maxLeaseLosses: 5,
        executionBudgetSeconds: 60,
        pendingAlertSeconds: 9,
        monitorIntervalSeconds: 0.5,
        schedulerIntervalSeconds: 0.25,
        alertWebhookUrl: 'https://ops.example.com/alerts',
      },
      webhooks: {
        timeoutSeconds: 4,
        connectTimeoutSeconds: 1.5,
        scheduleSeconds: [1, 2, 3],
        jitter: 0,
        minBackoffAfterThrottleSeconds: 6,
        concurrency: 11,
        endpointConcurrency: 12,
        secretGraceSeconds: 13,
        leaseSeconds: 14,
        pollSeconds: 0.25,
        alertSecret: SECRET,
        breaker: { window: 10, failureRatio: 0.75, minRequests: 4, cooldownSeconds: 2 },
      },
      signingSecret: 's'.repeat(32),
      artifactUrlTtlSeconds: 16,
      artifactRetentionSeconds: 600,
      jobRetentionSeconds: 700,
      streamTokenTtlSeconds: 17,
      streamPingSeconds: 0.2,
      consoleSessionSeconds: 43200,
      consoleOverviewSeconds: 5,
      report: {
        databaseUrl: 'postgres://r@src/shop',
        sources: ['orders', 'refunds'],
        chunkSize: 500,
        checkpoints: false,
      },
      seedDefaultTenant: true,
      tracing: {
        url: 'http://collector:4318/v1/traces',
        protocol: 'http/json',
        headers: { authorization: 'Bearer t', 'x-b': 'b c' },
        serviceName: 'jobs',
        resourceAttributes: { 'deployment.environment': 'prod' },
        sampler: 'parentbased_traceidratio',
        samplerArg: 0.25,
        // A batch larger than the queue is cut to the queue's size, as the SDK does.
        batch: { scheduledDelayMillis: 1000, exportTimeoutMillis: 10000, maxQueueSize: 256, maxExportBatchSize: 256 },
      },
    } satisfies Config);
  });

  it('takes an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', LONGHAUL_REPORT_SOURCES: '', DATABASE_URL: '' })).toEqual(DEFAULTS);
  });

  it('reads lists split on commas, trimmed, without empty entries', () => {
    expect(loadConfig({ LONGHAUL_CALLBACK_ALLOW: ' a.internal , ,b.internal,, ' }).callbackAllow).toEqual([
      'a.internal',
      'b.internal',
    ]);
    expect(loadConfig({ LONGHAUL_JOB_TYPES: ',' }).jobTypeModules).toEqual([]);
  });

  it('reads the retry schedule as seconds, and refuses one that is not', () => {
    expect(loadConfig({ LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: ' 0.5, 2 ,,0' }).webhooks.scheduleSeconds).toEqual([
      0.5, 2, 0,
    ]);
    expect(problem({ LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '5,soon' })).toBe(
      'invalid configuration:\n  LONGHAUL_WEBHOOK_SCHEDULE_SECONDS="5,soon": "soon" is not a number of seconds',
    );
    expect(problem({ LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '5,-1' })).toMatch(/"-1" is not a number of seconds/);
    expect(problem({ LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: 'Infinity' })).toMatch(/"Infinity" is not a number/);
    expect(problem({ LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: ' , ' })).toBe(
      'invalid configuration:\n  LONGHAUL_WEBHOOK_SCHEDULE_SECONDS=" , ": needs at least one delay',
    );
  });

  it('sends traces as OTLP protobuf unless JSON is asked for, and refuses a transport it does not offer', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).tracing.protocol).toBe('http/json');
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' })
        .tracing.protocol,
    ).toBe('http/protobuf');
    expect(problem({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toMatch(
      /^invalid configuration:\n {2}OTEL_EXPORTER_OTLP_PROTOCOL="grpc"/,
    );
  });

  it.each([
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ])('reads the switch %s as %s', (value, on) => {
    expect(loadConfig({ LONGHAUL_REPORT_CHECKPOINTS: value }).report.checkpoints).toBe(on);
    expect(loadConfig({ LONGHAUL_SEED_DEFAULT_TENANT: value }).seedDefaultTenant).toBe(on);
  });

  it('refuses a switch that is neither', () => {
    expect(problem({ LONGHAUL_REPORT_CHECKPOINTS: 'on' })).toMatch(
      /^invalid configuration:\n {2}LONGHAUL_REPORT_CHECKPOINTS="on": /,
    );
  });

  it('seeds the default tenant only on the embedded database unless told', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://db/x' }).seedDefaultTenant).toBe(false);
    expect(
      loadConfig({ DATABASE_URL: 'postgres://db/x', LONGHAUL_SEED_DEFAULT_TENANT: 'true' }).seedDefaultTenant,
    ).toBe(true);
    expect(loadConfig({ LONGHAUL_SEED_DEFAULT_TENANT: 'false' }).seedDefaultTenant).toBe(false);
  });

  it('makes the public URL from host and port, a wildcard host as loopback, without a trailing slash', () => {
    expect(loadConfig({ HOST: '0.0.0.0', PORT: '8080' }).publicUrl).toBe('http://127.0.0.1:8080');
    expect(loadConfig({ HOST: 'jobs.internal' }).publicUrl).toBe('http://jobs.internal:3000');
    expect(loadConfig({ LONGHAUL_PUBLIC_URL: 'https://jobs.example.com/base/' }).publicUrl).toBe(
      'https://jobs.example.com/base',
    );
  });

  it('keeps a claimed delivery leased past one whole attempt', () => {
    expect(loadConfig({ LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '10' }).webhooks.leaseSeconds).toBe(40);
    expect(
      loadConfig({ LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '10', LONGHAUL_WEBHOOK_LEASE_SECONDS: '3' }).webhooks.leaseSeconds,
    ).toBe(11);
    expect(
      loadConfig({ LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '10', LONGHAUL_WEBHOOK_LEASE_SECONDS: '12' }).webhooks
        .leaseSeconds,
    ).toBe(12);
  });

  it('requires the alert secret with the alert URL, and a Standard Webhooks one', () => {
    expect(problem({ LONGHAUL_ALERT_WEBHOOK_URL: 'https://ops.example.com/a' })).toBe(
      'invalid configuration:\n  LONGHAUL_ALERT_WEBHOOK_SECRET: required when LONGHAUL_ALERT_WEBHOOK_URL is set (alerts are signed)',
    );
    expect(problem({ LONGHAUL_ALERT_WEBHOOK_SECRET: 'hunter2' })).toBe(
      'invalid configuration:\n  LONGHAUL_ALERT_WEBHOOK_SECRET="hunter2": must be a Standard Webhooks secret (whsec_ + base64)',
    );
  });

  it('says why a token or secret is too short', () => {
    expect(problem({ LONGHAUL_ADMIN_TOKEN: 'a'.repeat(15) })).toMatch(
      /LONGHAUL_ADMIN_TOKEN="a{15}": must be at least 16 characters/,
    );
    expect(problem({ LONGHAUL_SIGNING_SECRET: 's'.repeat(31) })).toMatch(
      /LONGHAUL_SIGNING_SECRET="s{31}": must be at least 32 characters/,
    );
  });

  it.each([
    ['DATABASE_URL', 'not a url'],
    ['LONGHAUL_PUBLIC_URL', 'jobs.example.com'],
    ['LONGHAUL_ALERT_WEBHOOK_URL', 'ops'],
    ['LONGHAUL_REPORT_DATABASE_URL', 'shop'],
    ['LONGHAUL_LOG_LEVEL', 'verbose'],
    ['PORT', 'http'],
  ])('refuses %s=%s', (name, value) => {
    expect(problem({ [name]: value })).toMatch(
      new RegExp(`^invalid configuration:\\n  ${name}=${JSON.stringify(value)}: `),
    );
  });

  it.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('takes the log level %s', (level) => {
    expect(loadConfig({ LONGHAUL_LOG_LEVEL: level }).logLevel).toBe(level);
  });

  it('names every bad variable in one error', () => {
    expect(problem({ PORT: '-1', LONGHAUL_WEBHOOK_JITTER: '2', HOST: 'ok' }).split('\n')).toEqual([
      'invalid configuration:',
      expect.stringMatching(/^ {2}PORT="-1": /),
      expect.stringMatching(/^ {2}LONGHAUL_WEBHOOK_JITTER="2": /),
    ]);
  });
});

/** Each number's range: [variable, lowest, highest (undefined: none), whole numbers only]. */
const RANGES: Array<[string, number, number | undefined, boolean]> = [
  ['PORT', 0, 65535, true],
  ['LONGHAUL_EMBEDDED_PG_PORT', 1, 65535, true],
  ['LONGHAUL_PG_POOL_MAX', 2, 1000, true],
  ['LONGHAUL_BODY_LIMIT_BYTES', 1024, undefined, true],
  ['LONGHAUL_JSON_MAX_DEPTH', 2, 1000, true],
  ['LONGHAUL_JSON_MAX_MEMBERS', 1, undefined, true],
  ['LONGHAUL_JSON_MAX_STRING_LENGTH', 16, undefined, true],
  ['LONGHAUL_HEADERS_TIMEOUT_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_REQUEST_TIMEOUT_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_IDEMPOTENCY_TTL_SECONDS', 60, undefined, true],
  ['LONGHAUL_AUTH_CACHE_SECONDS', 0, undefined, false],
  ['LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS', 1, undefined, false],
  ['LONGHAUL_WORKER_CONCURRENCY', 1, 1000, true],
  ['LONGHAUL_WORKER_BURST_SLOTS', 0, 1000, true],
  ['LONGHAUL_TENANT_CONCURRENCY', 1, 1000, true],
  ['LONGHAUL_LEASE_SECONDS', 1, undefined, false],
  ['LONGHAUL_EXECUTION_BUDGET_SECONDS', 1, 23 * 60 * 60, false],
  ['LONGHAUL_PENDING_ALERT_SECONDS', 1, undefined, true],
  ['LONGHAUL_MONITOR_INTERVAL_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_SCHEDULER_INTERVAL_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_WEBHOOK_TIMEOUT_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_WEBHOOK_JITTER', 0, 1, false],
  ['LONGHAUL_WEBHOOK_MIN_BACKOFF_AFTER_THROTTLE_SECONDS', 0, undefined, false],
  ['LONGHAUL_WEBHOOK_CONCURRENCY', 1, 10_000, true],
  ['LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY', 1, 1000, true],
  ['LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS', 0, undefined, true],
  ['LONGHAUL_WEBHOOK_LEASE_SECONDS', 1, undefined, false],
  ['LONGHAUL_WEBHOOK_POLL_SECONDS', 0.05, undefined, false],
  ['LONGHAUL_BREAKER_WINDOW', 1, 10_000, true],
  ['LONGHAUL_BREAKER_MIN_REQUESTS', 1, undefined, true],
  ['LONGHAUL_BREAKER_COOLDOWN_SECONDS', 0, undefined, false],
  ['LONGHAUL_ARTIFACT_URL_TTL_SECONDS', 1, undefined, true],
  ['LONGHAUL_ARTIFACT_RETENTION_SECONDS', 60, undefined, true],
  ['LONGHAUL_JOB_RETENTION_SECONDS', 60, undefined, true],
  ['LONGHAUL_STREAM_TOKEN_TTL_SECONDS', 1, undefined, true],
  ['LONGHAUL_STREAM_PING_SECONDS', 0.1, undefined, false],
  ['LONGHAUL_REPORT_CHUNK_SIZE', 100, 1_000_000, true],
];

describe.each(RANGES)('%s', (name, low, high, whole) => {
  const accepts = (value: number) => expect(() => loadConfig({ [name]: String(value) })).not.toThrow();
  const refuses = (value: number | string) =>
    expect(problem({ [name]: String(value) })).toMatch(new RegExp(`^invalid configuration:\\n  ${name}="`));
  const step = whole ? 1 : low > 0 && low < 1 ? low / 10 : 0.5;

  it(`takes ${low} and refuses less`, () => {
    accepts(low);
    refuses(low - step);
  });

  it(high === undefined ? 'takes large values' : `takes ${high} and refuses more`, () => {
    if (high === undefined) accepts(10 ** 9);
    else {
      accepts(high);
      refuses(high + step);
    }
  });

  it(whole ? 'takes whole numbers only' : 'takes fractions', () => {
    const fraction = high === undefined ? low + 1.5 : (low + high) / 2 + 0.25;
    if (whole) refuses(fraction);
    else accepts(fraction);
    refuses('many');
  });
});

describe('the HTTP timeouts', () => {
  it('cap the headers timeout at the request timeout, as Node requires', () => {
    expect(loadConfig({ LONGHAUL_REQUEST_TIMEOUT_SECONDS: '4' }).http).toEqual({
      headersTimeoutSeconds: 4,
      requestTimeoutSeconds: 4,
    });
  });
});

describe('the breaker failure ratio', () => {
  it('is above 0 and at most 1', () => {
    expect(loadConfig({ LONGHAUL_BREAKER_FAILURE_RATIO: '1' }).webhooks.breaker.failureRatio).toBe(1);
    expect(loadConfig({ LONGHAUL_BREAKER_FAILURE_RATIO: '0.01' }).webhooks.breaker.failureRatio).toBe(0.01);
    expect(problem({ LONGHAUL_BREAKER_FAILURE_RATIO: '0' })).toMatch(/LONGHAUL_BREAKER_FAILURE_RATIO="0"/);
    expect(problem({ LONGHAUL_BREAKER_FAILURE_RATIO: '1.01' })).toMatch(/LONGHAUL_BREAKER_FAILURE_RATIO="1.01"/);
  });
});
