/**
 * The queue's gauges on a metrics port of its own behind a bearer token, and the dead-lettered-job
 * alert: jobs by status and type, the oldest pending job, workers online, dead letters (jobs and
 * deliveries), breaker states and lease takeovers, read from a real Postgres; no series names a tenant's
 * data unless the operator allows it; a dead-lettered job reaches the signed alert webhook.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics, type Registry } from '../src/observability/metrics.ts';
import { registerJobGauges } from '../src/jobs/metrics.ts';
import { queueFigures } from '../src/jobs/overview.ts';
import { createPool } from '../src/db/pool.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { createTestDatabase } from './support/db.ts';
import { insertJob, secondsFromNow } from './support/jobs.ts';
import { startService, type Service } from '../src/service.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { startTestService, type TestService } from './support/service.ts';
import { spawnWorker, waitFor } from './support/worker.ts';
import { WorkerMonitor } from '../src/worker/monitor.ts';

const TOKEN = 'metrics-token-0123456789';
const ALERT_SECRET = 'whsec_' + Buffer.from('alert-secret-0123456789abcdef').toString('base64');
let t: TestService;
let worker: Service | undefined;
let rx: Receiver;

/** The value of one series of the metrics text, or undefined when absent. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(token: string | null = TOKEN): Promise<Response> {
  return fetch(`${t.service.metricsUrl}/metrics`, {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}
const metrics = async () => (await scrape()).text();

async function submit(body: unknown): Promise<string> {
  const res = await t.api('/v1/jobs', { method: 'POST', json: body });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

beforeAll(async () => {
  rx = await startReceiver();
  rx.on('/gone', (_n, _req, res) => void res.writeHead(500).end());
  t = await startTestService({
    roles: ['api'],
    env: {
      LONGHAUL_METRICS_TOKEN: TOKEN,
      LONGHAUL_METRICS_PORT: '0',
      LONGHAUL_METRICS_HOST: '127.0.0.1',
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      // Read again in the background this often: the checks below wait for the figures they expect.
      LONGHAUL_METRICS_REFRESH_SECONDS: '0.5',
    },
  });
});

afterAll(async () => {
  await worker?.stop();
  await t.stop();
  await rx.close();
});

describe('/metrics on its own port', () => {
  it('requires the bearer token there and is not served on the API port', async () => {
    const missing = await scrape(null);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    expect(((await missing.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/unauthorized');
    expect((await scrape('wrong-token-0123456789')).status).toBe(401);
    expect((await scrape()).status).toBe(200);
    expect((await fetch(`${t.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${t.service.metricsUrl}/healthz`)).status).toBe(200);
  });
});

describe('queue gauges', () => {
  it('counts pending jobs by type exactly, with the age of the oldest, and no worker online', async () => {
    for (let i = 0; i < 3; i++) await submit({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });
    const text = await waitFor('the pending jobs in the gauges', async () => {
      const m = await metrics();
      return value(m, 'longhaul_jobs{status="PENDING",type="synthetic"}') === 3 ? m : undefined;
    });
    expect(value(text, 'longhaul_jobs{status="PENDING",type="synthetic"}')).toBe(3);
    expect(value(text, 'longhaul_jobs{status="RUNNING",type="synthetic"}')).toBe(0);
    expect(value(text, 'longhaul_jobs_estimated{status="PENDING"}')).toBe(0);
    expect(value(text, 'longhaul_jobs_estimated{status="COMPLETED"}')).toBe(1);
    expect(value(text, 'longhaul_job_oldest_pending_age_seconds')).toBeGreaterThan(0);
    expect(value(text, 'longhaul_workers_online')).toBe(0);
    expect(value(text, 'longhaul_dead_letter_jobs')).toBe(0);
  });

  it('shows workers, dead letters, breaker states and takeovers once a worker runs, and alerts on a dead-lettered job', async () => {
    const config = loadConfig({
      DATABASE_URL: t.db.url,
      LONGHAUL_LOG_LEVEL: 'silent',
      LONGHAUL_PG_POOL_MAX: '6',
      LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
      LONGHAUL_LEASE_SECONDS: '2',
      LONGHAUL_MONITOR_INTERVAL_SECONDS: '0.2',
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.05',
      LONGHAUL_WEBHOOK_POLL_SECONDS: '0.1',
      LONGHAUL_ALERT_WEBHOOK_URL: `${rx.url}/alerts`,
      LONGHAUL_ALERT_WEBHOOK_SECRET: ALERT_SECRET,
    });
    worker = await startService({ config, roles: ['worker'], log: createLogger('silent') });
    // Fails for good on its first attempt: dead-lettered. Its webhook is refused until it is DEAD.
    const dead = await submit({
      type: 'synthetic',
      input: { chunks: 1, chunk_ms: 0, fail_attempts: 1, permanent: true },
      callback_url: `${rx.url}/gone`,
    });

    const alert = await waitFor(
      'the dead-lettered job alert webhook',
      async () => rx.to('/alerts').find((r) => r.body.includes(dead) && r.body.includes('"job-dead"')),
      20_000,
    );
    const payload = new Webhook(ALERT_SECRET).verify(alert.body, {
      'webhook-id': String(alert.headers['webhook-id']),
      'webhook-timestamp': String(alert.headers['webhook-timestamp']),
      'webhook-signature': String(alert.headers['webhook-signature']),
    }) as { type: string; data: { kind: string; details: { job_id: string } } };
    expect(payload).toMatchObject({ type: 'alert.raised', data: { kind: 'job-dead', details: { job_id: dead } } });

    // One pass reads the gauges concurrently, each in its own snapshot: a pass can show the dead delivery
    // and not yet the job dead-lettered before it. The next pass shows both.
    const text = await waitFor('the dead delivery and the dead job in the gauges', async () => {
      const m = await metrics();
      return value(m, 'longhaul_dead_letter_deliveries') === 1 && value(m, 'longhaul_dead_letter_jobs') === 1
        ? m
        : undefined;
    });
    expect(value(text, 'longhaul_workers_online')).toBe(1);
    expect(value(text, 'longhaul_dead_letter_jobs')).toBe(1);
    expect(value(text, 'longhaul_metrics_read_age_seconds')).toBeLessThan(60);
    expect(value(text, 'longhaul_jobs{status="PENDING",type="synthetic"}')).toBe(0);
    expect(value(text, 'longhaul_alerts_active{kind="job-dead"}')).toBe(1);
    expect(value(text, 'longhaul_webhook_endpoints{state="closed"}')).toBe(1);
    expect(value(text, 'longhaul_webhook_endpoints{state="open"}')).toBe(0);
    // Nothing of a tenant's (its endpoint's id or host, its id) is a label unless the operator allows it.
    const { rows } = await t.service.pool.query<{ id: string }>('SELECT id FROM webhook_endpoints');
    for (const leak of [rows[0]?.id ?? '?', '127.0.0.1', t.tenant.id, 'endpoint_id=']) expect(text).not.toContain(leak);
  });

  it('counts a lease takeover and clears the dead-letter alert when the job is replayed', async () => {
    await worker?.stop();
    worker = undefined;
    // A monitor of the test's own, whose counters go to the scraped registry; no in-process worker competes.
    const monitor = new WorkerMonitor({
      pool: t.service.pool,
      boss: t.service.boss,
      registry: t.service.registry,
      alerts: t.service.alerts,
      log: t.service.log,
      metrics: t.service.metrics.registry,
      options: { intervalSeconds: 60, leaseSeconds: 2, pendingAlertSeconds: 300, maxLeaseLosses: 10 },
    });
    const child = await spawnWorker(t.db.url);
    try {
      const id = await submit({ type: 'synthetic', input: { chunks: 100, chunk_ms: 100 } });
      await waitFor('the job running on the child worker', async () => {
        const { rows } = await t.service.pool.query<{ owner: string | null }>(
          'SELECT lease_owner AS owner FROM jobs WHERE id = $1',
          [id],
        );
        return rows[0]?.owner?.includes(`:${child.pid}:`) === true;
      });
      await child.kill('SIGKILL');
      await waitFor('the expired lease taken over', async () => (await monitor.sweepExpiredLeases()) > 0, 15_000, 200);
    } finally {
      await child.kill('SIGKILL');
    }
    expect(value(await metrics(), 'longhaul_lease_takeovers_total{outcome="continued"}')).toBe(1);

    // Replayed while no worker runs, the job stays out of the dead-letter queue: the next pass clears its alert.
    const replay = await t.api('/v1/dead-letters/replay', { method: 'POST', json: { kind: 'job' } });
    expect(replay.status).toBe(202);
    expect(((await replay.json()) as { replayed: number }).replayed).toBe(1);
    expect((await t.service.alerts.active('job-dead')).length).toBe(1);
    await monitor.checkDeadLetters();
    expect(await t.service.alerts.active('job-dead')).toEqual([]);
    await waitFor('the alert cleared in the gauges', async () =>
      value(await metrics(), 'longhaul_alerts_active{kind="job-dead"}') === undefined ? true : undefined,
    );
  });
});

describe('database gauges read in the background', () => {
  const pending = async (registry: Registry) =>
    value(await registry.metrics(), 'longhaul_jobs{status="PENDING",type="synthetic"}');

  it('serves the last read between refreshes instead of reading at each scrape', async () => {
    const m = createMetrics({ refreshSeconds: 3600 });
    try {
      registerJobGauges(m.registry, t.service.pool, ['synthetic']);
      const first = await pending(m.registry);
      expect(first).toBeDefined();
      await submit({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });
      for (let i = 0; i < 3; i++) expect(await pending(m.registry)).toBe(first);
      expect(value(await m.registry.metrics(), 'longhaul_metrics_read_age_seconds')).toBeGreaterThanOrEqual(0);
    } finally {
      m.stop();
    }
  });

  it('reads again once the interval has passed, without a scrape waiting for it', async () => {
    const m = createMetrics({ refreshSeconds: 0.1 });
    try {
      registerJobGauges(m.registry, t.service.pool, ['synthetic']);
      const first = (await pending(m.registry)) ?? Number.NaN;
      await submit({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });
      await waitFor('the new job in the gauge', async () =>
        (await pending(m.registry)) === first + 1 ? true : undefined,
      );
    } finally {
      m.stop();
    }
  });
});

describe('the oldest pending job', () => {
  it('is the longest wait among due jobs, also when the first created were queued again since', async () => {
    const db = await createTestDatabase();
    const pool = createPool(db.url, 2);
    try {
      const busy = await createTenant(pool, 'busy');
      await createTenant(pool, 'idle');
      const at = (s: number) => secondsFromNow(-s);
      // More jobs created three hours ago than the first read of a tenant takes, each queued again a minute ago.
      for (let i = 0; i < 20; i++) await insertJob(pool, busy.id, { created_at: at(10_800), updated_at: at(60) });
      await insertJob(pool, busy.id, { created_at: at(7_200), updated_at: at(7_200) });
      // Created before all of them, but not due: it is not waiting.
      await insertJob(pool, busy.id, { created_at: at(18_000), updated_at: at(18_000), scheduled_for: at(-3_600) });
      const { oldestPendingSeconds } = await queueFigures(pool, ['synthetic']);
      expect(oldestPendingSeconds).toBeGreaterThanOrEqual(7_200);
      expect(oldestPendingSeconds).toBeLessThan(7_300);
    } finally {
      await pool.end();
      await db.drop();
    }
  });
});
