/**
 * Starts longhaul's roles against one Postgres: `api` (HTTP) and `worker` (job runner, webhook
 * dispatcher, monitors). `npm start` runs both in one process; `longhaul api` / `longhaul worker` one each.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { createServer, type RequestListener, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgBoss } from 'pg-boss';
import { createApp } from './api/app.ts';
import { createConsole } from './console/app.ts';
import { startMetricsServer } from './api/metrics-server.ts';
import { createStartingApp } from './api/starting.ts';
import { TokenSigner } from './tokens/signer.ts';
import type { Config } from './config.ts';
import { openDatabase, type Database } from './db/database.ts';
import { migrate } from './db/migrate.ts';
import { PgListener } from './db/listener.ts';
import { createPool, isConnectionError, type Pool } from './db/pool.ts';
import { createReportJobType } from './job-types/report/report.ts';
import { synthetic } from './job-types/synthetic.ts';
import { ensureQueues } from './jobs/queues.ts';
import { JobTypeRegistry, loadJobTypeModule } from './jobs/registry.ts';
import { JobSubmitter } from './jobs/submit.ts';
import { releaseExpiredKeys } from './jobs/lifecycle.ts';
import { Alerts } from './alerts/alerts.ts';
import { CallbackAllowList } from './webhooks/allowlist.ts';
import { signedWebhookAlertSink } from './webhooks/alert-sink.ts';
import { Dispatcher } from './webhooks/dispatcher.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { startTracing, type Tracing } from './observability/tracing.ts';
import { RealtimeHub } from './realtime/hub.ts';
import { WorkerMonitor } from './worker/monitor.ts';
import { WorkerRuntime } from './worker/runtime.ts';
import { registerWorkerGauges, WorkerPresence } from './worker/presence.ts';
import { registerJobGauges } from './jobs/metrics.ts';
import { registerWebhookGauges } from './webhooks/metrics.ts';
import { sweepArtifacts } from './storage/retention.ts';
import { sweepFinishedJobs } from './jobs/retention.ts';
import { Periodic } from './periodic.ts';
import { createStorage } from './storage/local.ts';
import type { Storage } from './storage/storage.ts';
import { ScheduleFiring } from './schedules/firing.ts';
import { LimitedTenants } from './tenants/limits.ts';
import { countTenants, createTenant } from './tenants/repository.ts';

export type Role = 'api' | 'worker';

export interface ServiceOptions {
  config: Config;
  roles: readonly Role[];
  log?: Logger;
  /** Aborting it (SIGTERM) ends a start-up that is still waiting for the database: startService rejects with its reason. */
  signal?: AbortSignal;
}

export interface Service {
  config: Config;
  log: Logger;
  pool: Pool;
  boss: PgBoss;
  metrics: Metrics;
  /** Raise/clear operator alerts; add sinks (e.g. the alert webhook) with `alerts.addSink`. */
  alerts: Alerts;
  registry: JobTypeRegistry;
  /** Base URL of the HTTP server, when the api role runs. */
  url: string | undefined;
  /** Base URL of the metrics server, when LONGHAUL_METRICS_PORT is set. */
  metricsUrl: string | undefined;
  /** The live event hub, when the api role runs. */
  realtime: RealtimeHub | undefined;
  /** The process's one LISTEN connection; `connected` is false while the database is unreachable. */
  listener: PgListener;
  databaseUrl: string;
  /** Drains and stops: stop accepting, let running work reach a safe point, close connections. */
  stop(): Promise<void>;
}

/** How often expired Idempotency-Keys are released. */
const KEY_SWEEP_INTERVAL_MS = 10 * 60 * 1000;

/** How often expired artifacts are deleted. */
const ARTIFACT_SWEEP_INTERVAL_MS = 10 * 60 * 1000;
/** How often finished jobs past their retention are deleted (retention is days; an hour is precise enough). */
const JOB_SWEEP_INTERVAL_MS = 60 * 60 * 1000;

/** The built-in job types (synthetic, report) and those of LONGHAUL_JOB_TYPES, on the database at `databaseUrl`. */
export async function builtInJobTypes(
  config: Config,
  deps: { databaseUrl: string; pool?: Pool; storage?: Storage },
): Promise<JobTypeRegistry> {
  const report = createReportJobType({
    config,
    databaseUrl: deps.databaseUrl,
    storage: deps.storage ?? createStorage(config),
    pool: deps.pool,
  });
  const registry = new JobTypeRegistry([synthetic, report]);
  for (const spec of config.jobTypeModules) for (const t of await loadJobTypeModule(spec)) registry.register(t);
  return registry;
}

/** First start of an empty embedded database: a `default` tenant whose key is shown once. */
async function seedDefaultTenant(pool: Pool, config: Config, db: Database): Promise<void> {
  if (!config.seedDefaultTenant || (await countTenants(pool)) > 0) return;
  const tenant = await createTenant(pool, 'default').catch(() => undefined);
  if (tenant === undefined) return; // another process seeded it at the same moment
  await mkdir(config.dataDir, { recursive: true });
  const keyFile = path.join(config.dataDir, 'default-api-key');
  await writeFile(keyFile, tenant.api_key + '\n', { mode: 0o600 });
  await chmod(keyFile, 0o600);
  // Printed once to the terminal, deliberately not through the logger: keys never go to logs.
  process.stderr.write(
    `\nlonghaul: created tenant "default" (${db.embedded ? 'embedded database' : 'database'}).\n` +
      `  API key (shown once, also saved to ${keyFile}):\n    ${tenant.api_key}\n` +
      `  Webhook secret:\n    ${tenant.webhook_secret}\n\n`,
  );
}

/** The API's HTTP server: listening from the start, its requests answered by whatever `serve` is at the time. */
interface HttpServer {
  server: Server;
  url: string;
  serve: RequestListener;
  close(): Promise<void>;
}

/**
 * How long an idle keep-alive connection stays open: past the idle timeouts of clients and load
 * balancers, so that they always close an idle connection first. With Node's 5 s default, a client
 * reusing a connection just as the server closed it saw a reset (a load balancer, a 502).
 */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

async function listen(config: Config, serve: RequestListener): Promise<HttpServer> {
  const headersTimeout = config.http.headersTimeoutSeconds * 1000;
  const server = createServer(
    {
      headersTimeout,
      requestTimeout: config.http.requestTimeoutSeconds * 1000,
      // Node checks the timeouts every 30 s by default: check often enough that a timeout is kept to within a second.
      connectionsCheckingInterval: Math.min(1000, headersTimeout / 2),
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    },
    (req, res) => http.serve(req, res),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const http: HttpServer = {
    server,
    url: `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${port}`,
    serve,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections would hold close() open; idle ones go now, busy ones after their response.
        server.closeIdleConnections();
      }),
  };
  return http;
}

/** First wait before starting again after the database went away during start-up; doubled up to the cap. */
const RESTART_INITIAL_MS = 100;
const RESTART_MAX_MS = 2_000;

/**
 * Starts the roles. A database that does not answer is waited for (the outage logged once, by the
 * LISTEN connection), the API meanwhile alive but not ready; one that goes away during start-up is
 * waited for again and start-up begins anew. Any other failure, or `signal` (SIGTERM), ends start-up.
 */
export async function startService(opts: ServiceOptions): Promise<Service> {
  const { config, roles, signal } = opts;
  const log = opts.log ?? createLogger(config.logLevel);
  const tracing = startTracing(config.tracing);
  const db = await openDatabase(config, log);
  const pool = createPool(db.url, config.poolMax);
  const listener = new PgListener({ databaseUrl: db.url, log });
  let http: HttpServer | undefined;
  try {
    if (roles.includes('api')) {
      // Counted apart: the started service's metrics are made with it.
      const starting = createStartingApp(log, createMetrics());
      http = await listen(
        config,
        getRequestListener((req) => starting.fetch(req), { hostname: config.host }),
      );
    }
    await listener.start();
    for (let backoff = RESTART_INITIAL_MS; ; backoff = Math.min(RESTART_MAX_MS, backoff * 2)) {
      await listener.untilConnected(signal);
      try {
        const service = await startRoles({ config, roles, log, db, pool, listener, http, tracing });
        if (signal?.aborted === true) {
          await service.stop();
          throw signal.reason;
        }
        return service;
      } catch (err) {
        if (signal?.aborted === true || !isConnectionError(err)) throw err;
        log.warn({ err }, 'database went away during start-up; starting again once it answers');
        await sleep(backoff, undefined, { signal });
      }
    }
  } catch (err) {
    await http?.close();
    await listener.stop();
    await pool.end().catch(() => undefined);
    await db.close().catch(() => undefined);
    await tracing.stop().catch(() => undefined);
    throw err;
  }
}

interface Started {
  config: Config;
  roles: readonly Role[];
  log: Logger;
  db: Database;
  pool: Pool;
  listener: PgListener;
  http: HttpServer | undefined;
  tracing: Tracing;
}

/** One attempt at starting the roles on a database that answered; on failure, undoes what it started. */
async function startRoles(ctx: Started): Promise<Service> {
  const { config, roles, log, db, pool, listener, http, tracing } = ctx;
  // Stopped last: every subscriber (hub, worker, dispatcher) unsubscribes first.
  const stopListener = () => listener.stop();
  const stops: Array<() => Promise<void>> = [stopListener];
  /** Shared by every attempt (the server, the LISTEN connection): not undone when an attempt fails. */
  const shared = new Set<() => Promise<void>>([stopListener]);
  try {
    const applied = await migrate(pool);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const boss = new PgBoss({
      connectionString: db.url,
      application_name: 'longhaul-queue',
      max: Math.max(4, Math.ceil(config.poolMax / 2)),
      // The worker listens on pg-boss's channel through the process's own LISTEN connection; queues
      // created with `notify` announce new jobs whatever this setting, which only opens pg-boss's own.
      useListenNotify: false,
      // longhaul's own spans cover the enqueue, the execution and its completion; pg-boss's would add a
      // root trace for every idle fetch of every worker.
      openTelemetry: { enabled: false },
      // Dead executions (no heartbeat) are found by this pass; keep it well inside the lease time.
      monitorIntervalSeconds: Math.max(1, Math.min(10, Math.floor(config.worker.leaseSeconds / 3))),
      superviseIntervalSeconds: Math.max(1, Math.min(10, Math.floor(config.worker.leaseSeconds / 3))),
    });
    // During an outage pg-boss's timers fail on every tick: the outage is logged once, by the listener.
    boss.on('error', (err: unknown) =>
      isConnectionError(err)
        ? log.debug({ err }, 'pg-boss: database unreachable')
        : log.error({ err }, 'pg-boss error'),
    );
    boss.on('warning', (w: unknown) => log.warn({ warning: w }, 'pg-boss warning'));
    // Before start: a start that fails half-way leaves timers that stop() ends.
    stops.unshift(() => boss.stop({ graceful: true, timeout: config.shutdownTimeoutSeconds * 1000 }));
    await boss.start();
    await ensureQueues(boss, config.worker);
    if (applied.length > 0) {
      // Fresh tables have no statistics and plan badly until autovacuum gets to them.
      await pool.query('ANALYZE jobs; ANALYZE job_events');
      await pool.query(`DO $$ DECLARE t record; BEGIN
        FOR t IN SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'pgboss' LOOP
          EXECUTE format('ANALYZE %I.%I', t.schemaname, t.tablename);
        END LOOP; END $$`);
    }
    const storage = createStorage(config);
    const registry = await builtInJobTypes(config, { databaseUrl: db.url, pool, storage });
    await seedDefaultTenant(pool, config, db);
    // Each attempt its own registry: a failed attempt's metrics (gauges on its pool's queries) go with it.
    const metrics = createMetrics({ refreshSeconds: config.metrics.refreshSeconds });
    stops.unshift(async () => metrics.stop());
    let metricsUrl: string | undefined;
    registerJobGauges(metrics.registry, pool, registry.names());
    registerWorkerGauges(metrics.registry, pool, config.worker.leaseSeconds);
    registerWebhookGauges(metrics.registry, pool, { tenantLabels: config.metrics.tenantLabels });
    const alerts = new Alerts(pool, log, metrics.registry);
    if (config.worker.alertWebhookUrl !== undefined && config.webhooks.alertSecret !== undefined) {
      alerts.addSink(signedWebhookAlertSink(config.worker.alertWebhookUrl, config.webhooks.alertSecret));
    }

    if (config.metrics.port !== undefined) {
      const server = await startMetricsServer({
        registry: metrics.registry,
        token: config.metrics.token,
        port: config.metrics.port,
        host: config.metrics.host,
        log,
      });
      metricsUrl = server.url;
      stops.unshift(() => server.stop());
    }

    let url: string | undefined;
    let activate = (): void => undefined;
    let setDraining = (): void => undefined;
    let realtime: RealtimeHub | undefined;
    if (roles.includes('api')) {
      const submitter = new JobSubmitter(pool, boss, { idempotencyTtlSeconds: config.idempotencyTtlSeconds });
      const signer = await TokenSigner.load(pool, config.signingSecret);
      const hub = new RealtimeHub({
        pool,
        listener,
        log,
        pingIntervalMs: config.streamPingSeconds * 1000,
        registry: metrics.registry,
      });
      await hub.start();
      realtime = hub;
      const deps = {
        config,
        pool,
        boss,
        log,
        metrics,
        registry,
        submitter,
        limitedTenants: new LimitedTenants(pool, config.authCacheSeconds * 1000),
        storage,
        signer,
        realtime: hub,
        database: listener,
        readiness: { realtime: async () => hub.listening },
      };
      const handle = createApp(deps);
      // The operator console, on the same server (it calls the domain modules, not the HTTP API).
      handle.app.route('/', createConsole(deps) as unknown as typeof handle.app);
      setDraining = handle.setDraining;
      const hono = getRequestListener((req, env) => handle.app.fetch(req, env), { hostname: config.host });
      const server = http as HttpServer;
      url = server.url;
      // Once every role has started: POST /v1/jobs takes the lane; every other request goes to Hono.
      activate = () => {
        server.serve = (req, res) => void (handle.lane(req, res) || hono(req, res));
        handle.injectWebSocket(server.server);
        log.info({ url, roles }, 'longhaul API listening');
      };
      const closeServer = () => server.close();
      shared.add(closeServer);
      stops.unshift(closeServer);
      // Open streams hold their connections (and so the server's close) open: end them first; clients resume elsewhere.
      stops.unshift(() => hub.stop());
    }
    if (roles.includes('worker')) {
      const w = config.worker;
      const worker = new WorkerRuntime({
        pool,
        boss,
        registry,
        log,
        listener,
        metrics: metrics.registry,
        options: {
          concurrency: w.concurrency,
          burstSlots: w.burstSlots,
          tenantConcurrency: w.tenantConcurrency,
          leaseSeconds: w.leaseSeconds,
          executionBudgetSeconds: w.executionBudgetSeconds,
          shutdownTimeoutSeconds: config.shutdownTimeoutSeconds,
          maxLeaseLosses: w.maxLeaseLosses,
        },
      });
      const monitor = new WorkerMonitor({
        pool,
        boss,
        registry,
        alerts,
        log,
        metrics: metrics.registry,
        options: {
          intervalSeconds: w.monitorIntervalSeconds,
          leaseSeconds: w.leaseSeconds,
          pendingAlertSeconds: w.pendingAlertSeconds,
          maxLeaseLosses: w.maxLeaseLosses,
        },
      });
      await worker.start(db.url);
      monitor.start();
      const presence = new WorkerPresence(pool, log, {
        id: worker.owner,
        concurrency: w.concurrency,
        jobTypes: registry.names(),
        leaseSeconds: w.leaseSeconds,
      });
      await presence.start();
      // Before pg-boss stops: running jobs reach a chunk boundary, commit, and hand over.
      stops.unshift(async () => {
        await monitor.stop();
        await worker.stop();
        await presence.stop();
      });
      log.info({ owner: worker.owner, concurrency: w.concurrency, types: registry.names() }, 'longhaul worker started');
    }
    if (roles.includes('worker')) {
      const dispatcher = new Dispatcher({
        pool,
        listener,
        settings: config.webhooks,
        allow: new CallbackAllowList(config.callbackAllow),
        log,
        registry: metrics.registry,
        alerts,
        drainSeconds: config.shutdownTimeoutSeconds,
      });
      await dispatcher.start();
      stops.unshift(() => dispatcher.stop());
      const firing = new ScheduleFiring({
        pool,
        submitter: new JobSubmitter(pool, boss, { idempotencyTtlSeconds: config.idempotencyTtlSeconds }),
        registry,
        log,
        intervalMs: config.worker.schedulerIntervalSeconds * 1000,
      });
      firing.start();
      stops.unshift(() => firing.stop());
    }
    const housekeeping = new Periodic(log).every(
      'releasing expired idempotency keys',
      KEY_SWEEP_INTERVAL_MS,
      async () => void (await releaseExpiredKeys(pool)),
    );
    if (roles.includes('worker')) {
      housekeeping
        .every('artifact retention sweep', ARTIFACT_SWEEP_INTERVAL_MS, async () => {
          const n = await sweepArtifacts(pool, storage, config.artifactRetentionSeconds);
          if (n.artifacts + n.folders > 0) log.info(n, 'expired artifacts removed');
        })
        .every('job retention sweep', JOB_SWEEP_INTERVAL_MS, async () => {
          const n = await sweepFinishedJobs(pool, config.jobRetentionSeconds);
          if (n > 0) log.info({ jobs: n }, 'finished jobs past retention deleted');
        });
    }
    housekeeping.start();
    stops.splice(stops.length - 1, 0, () => housekeeping.stop());
    activate();

    let stopping: Promise<void> | undefined;
    return {
      config,
      log,
      pool,
      boss,
      metrics,
      alerts,
      registry,
      url,
      metricsUrl,
      realtime,
      listener,
      databaseUrl: db.url,
      stop: () =>
        (stopping ??= (async () => {
          setDraining();
          for (const stop of stops) await stop().catch((err: unknown) => log.error({ err }, 'error while stopping'));
          await pool.end().catch(() => undefined);
          await db.close().catch((err: unknown) => log.error({ err }, 'error stopping embedded PostgreSQL'));
          await tracing.stop().catch((err: unknown) => log.warn({ err }, 'error sending the last spans'));
        })()),
    };
  } catch (err) {
    for (const stop of stops) if (!shared.has(stop)) await stop().catch(() => undefined);
    throw err;
  }
}
