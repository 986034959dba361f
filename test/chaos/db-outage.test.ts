/**
 * The database going away, with the real thing: `longhaul api` and `longhaul worker` as separate
 * processes on a Postgres of this test's own, a real webhook receiver, and a steady stream of
 * submissions with Idempotency-Keys. Postgres is stopped for 20 s and started again, then restarted
 * with `-m fast` and with `-m immediate`. No process exits; every answer is 202 or 503; /readyz is 200
 * again within 2 s of Postgres accepting connections; each process logs each outage once; every job
 * answered 202 (at once, or when a 503 is retried afterwards with the same key) completes exactly once
 * and its webhook is delivered. The figures are printed, and recorded in docs/resilience.md.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { isConnectionError } from '../../src/db/pool.ts';
import { readEventsOfJobs } from '../../src/realtime/events.ts';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOwnPostgres, type OwnPostgres } from '../support/own-postgres.ts';
import { freePort, runLonghaul, runLonghaulToEnd, type LonghaulProcess } from '../support/process.ts';
import { startReceiver, waitFor, type Receiver } from '../support/receiver.ts';

/** Submissions per second, for the whole scenario. */
const RATE = 20;
const OUTAGE_MS = 20_000;
/** Normal operation between the disturbances. */
const CALM_MS = 3_000;
const READY_WITHIN_MS = 2_000;
/** What a process logs when it loses the database (src/db/listener.ts). */
const LOST = 'database connection lost; reconnecting until it answers again';

let pgServer: OwnPostgres;
let rx: Receiver;
let api: LonghaulProcess;
let worker: LonghaulProcess;
let env: Record<string, string>;
let url: string;
let tenant: { api_key: string; webhook_secret: string };
const exits: string[] = [];

beforeAll(async () => {
  pgServer = await startOwnPostgres(await mkdtemp(path.join(tmpdir(), 'longhaul-outage-')));
  rx = await startReceiver();
  env = {
    DATABASE_URL: pgServer.url,
    HOST: '127.0.0.1',
    PORT: String(await freePort()),
    LONGHAUL_LOG_LEVEL: 'info',
    LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
    LONGHAUL_LEASE_SECONDS: '3',
    LONGHAUL_MONITOR_INTERVAL_SECONDS: '1',
    LONGHAUL_WEBHOOK_TIMEOUT_SECONDS: '2',
    LONGHAUL_WEBHOOK_LEASE_SECONDS: '5',
    LONGHAUL_WEBHOOK_POLL_SECONDS: '0.5',
    LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
  };
  const created = await runLonghaulToEnd(['tenants', 'create', 'outage', '--json'], env);
  expect(created.code).toBe(0);
  tenant = JSON.parse(created.stdout) as typeof tenant;
  api = runLonghaul(['api'], env);
  await api.waitForLog((l) => l.msg === 'longhaul API listening', 60_000);
  url = `http://127.0.0.1:${env.PORT}`;
  worker = runLonghaul(['worker'], env);
  await worker.waitForLog((l) => l.msg === 'longhaul worker started', 60_000);
  for (const [name, p] of [
    ['api', api],
    ['worker', worker],
  ] as const)
    void p.exited.then((code) => exits.push(`${name} exited with ${code}`));
}, 120_000);

afterAll(async () => {
  for (const p of [api, worker]) p?.kill('SIGKILL');
  await rx?.close();
  await pgServer?.destroy();
});

interface Submission {
  key: string;
  body: string;
  statuses: number[];
  jobId?: string;
}

async function submit(s: Submission): Promise<void> {
  try {
    const res = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tenant.api_key}`,
        'content-type': 'application/json',
        'idempotency-key': s.key,
      },
      body: s.body,
      signal: AbortSignal.timeout(10_000),
    });
    s.statuses.push(res.status);
    const body = (await res.json()) as { id?: string; type?: string };
    if (res.status === 202) s.jobId = body.id;
    else if (res.status === 503) {
      expect(body.type).toBe('https://longhaul.dev/problems/service-unavailable');
      expect(res.headers.get('retry-after')).not.toBeNull();
    }
  } catch (err) {
    s.statuses.push(0);
    throw err;
  }
}

/** Polls /readyz until it answers 200; the milliseconds that took. */
async function readyAfter(): Promise<number> {
  const started = performance.now();
  for (;;) {
    const res = await fetch(`${url}/readyz`).catch(() => undefined);
    if (res?.status === 200) return Math.round(performance.now() - started);
    if (performance.now() - started > 30_000) throw new Error('/readyz did not come back');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('survives Postgres stopped for 20 s and restarted fast and immediate: no exit, 202 or 503, every job once', async () => {
  const submissions: Submission[] = [];
  const inFlight = new Set<Promise<void>>();
  let streaming = true;
  const failures: unknown[] = [];
  const stream = (async () => {
    for (let i = 0; streaming; i++) {
      const s: Submission = {
        key: `outage-${i}`,
        body: JSON.stringify({
          type: 'synthetic',
          input: { chunks: 2, chunk_ms: 20 },
          callback_url: `${rx.url}/hook`,
        }),
        statuses: [],
      };
      submissions.push(s);
      const p = submit(s).catch((err: unknown) => void failures.push(err));
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      await sleep(1000 / RATE);
    }
  })();

  const recovery: Record<string, number> = {};
  await sleep(CALM_MS);
  await pgServer.stop('fast');
  const down = await fetch(`${url}/readyz`);
  expect(down.status).toBe(503);
  expect(((await down.json()) as { checks: Record<string, string> }).checks.database).toBe('failing');
  await sleep(OUTAGE_MS);
  await pgServer.start();
  recovery.stopped = await readyAfter();

  await sleep(CALM_MS);
  await pgServer.stop('fast');
  await pgServer.start();
  recovery.fast = await readyAfter();

  await sleep(CALM_MS);
  await pgServer.stop('immediate');
  await pgServer.start();
  recovery.immediate = await readyAfter();

  await sleep(CALM_MS);
  streaming = false;
  await stream;
  await Promise.all(inFlight);
  expect(failures).toEqual([]);

  const byStatus: Record<string, number> = {};
  for (const s of submissions) byStatus[s.statuses[0] ?? 0] = (byStatus[String(s.statuses[0] ?? 0)] ?? 0) + 1;
  // Refused ones are safe to retry as they were: each becomes one job, a new one or the one a 503 hid.
  const refused = submissions.filter((s) => s.statuses[0] === 503);
  for (const s of refused) await submit(s);
  const retried: Record<string, number> = {};
  for (const s of refused) retried[s.statuses[1] ?? 0] = (retried[String(s.statuses[1] ?? 0)] ?? 0) + 1;

  const accepted = submissions.filter((s) => s.jobId !== undefined).map((s) => s.jobId as string);
  const check = new pg.Pool({ connectionString: pgServer.url, max: 2 });
  try {
    await waitFor(
      'every accepted job completed and its webhook delivered',
      async () => {
        const { rows } = await check.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'COMPLETED'`,
          [accepted],
        );
        if (exits.length > 0) throw new Error(`${exits.join('; ')}\n${worker.stderr()}${api.stderr()}`);
        const hooked = new Set(rx.to('/hook').map((r) => (JSON.parse(r.body) as { data: { id: string } }).data.id));
        // Delivered and recorded: a dispatcher that cannot record its results sends them again and again.
        const { rows: recorded } = await check.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM webhook_deliveries WHERE job_id = ANY($1::uuid[]) AND status = 'SUCCEEDED'`,
          [accepted],
        );
        return (
          rows[0]?.n === accepted.length && recorded[0]?.n === accepted.length && accepted.every((id) => hooked.has(id))
        );
      },
      90_000,
    );
    const { rows: jobs } = await check.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
    // Every COMPLETED event of every job, as streams read them (stored, or the job's row's: sql/099).
    const { rows: ids } = await check.query<{ id: string }>('SELECT id FROM jobs');
    const read = await readEventsOfJobs(
      check,
      ids.map((r) => ({ jobId: r.id, after: 0 })),
      1000,
    );
    const byJob = new Map<string, number>();
    for (const e of read)
      if (e.kind === 'status' && (e.data as { status?: string }).status === 'COMPLETED')
        byJob.set(e.jobId, (byJob.get(e.jobId) ?? 0) + 1);
    const completions = [...byJob].map(([id, n]) => ({ id, n }));
    const figures = {
      submissions: submissions.length,
      answers: byStatus,
      retried_503s: retried,
      jobs_accepted: new Set(accepted).size,
      jobs_in_database: jobs[0]?.n,
      jobs_completed: completions.length,
      webhooks_received: rx.to('/hook').length,
      readyz_recovery_ms: recovery,
      process_exits: exits.length,
      outage_log_lines: {
        api: api.logs().filter((l) => l.msg === LOST).length,
        worker: worker.logs().filter((l) => l.msg === LOST).length,
      },
    };
    console.log('outage figures', JSON.stringify(figures));
    expect(exits).toEqual([]);
    expect(Object.keys(byStatus).sort()).toEqual(['202', '503']);
    expect(Object.keys(retried)).toEqual(['202']);
    // One job per key, none lost and none twice.
    expect(new Set(accepted).size).toBe(submissions.length);
    expect(jobs[0]?.n).toBe(submissions.length);
    expect(completions.every((c) => c.n === 1)).toBe(true);
    expect(completions.length).toBe(submissions.length);
    for (const r of rx.to('/hook'))
      new Webhook(tenant.webhook_secret).verify(r.body, r.headers as Record<string, string>);
    for (const ms of Object.values(recovery)) expect(ms).toBeLessThanOrEqual(READY_WITHIN_MS);
    // Three outages: each logged once by each process, its end once.
    for (const p of [api, worker]) {
      expect(p.logs().filter((l) => l.msg === LOST)).toHaveLength(3);
      expect(p.logs().filter((l) => l.msg === 'database connection restored')).toHaveLength(3);
      expect(p.logs().filter((l) => l.msg === 'unhandled error')).toEqual([]);
      // Nothing else logs the outage as a warning or an error, per attempt or per job.
      expect(p.logs().filter((l) => Number(l.level) >= 40 && l.msg !== LOST && isConnectionError(l.err))).toEqual([]);
    }
  } finally {
    await check.end();
  }

  // Told to stop, both drain and exit 0.
  api.kill('SIGTERM');
  worker.kill('SIGTERM');
  expect(await api.exited).toBe(0);
  expect(await worker.exited).toBe(0);
}, 240_000);
