/**
 * The report job through the service: 422s for bad input, a real run by the worker, artifacts listed and
 * downloaded with the API key and with signed links, and a `longhaul worker` killed with SIGKILL halfway
 * through a report, resumed by another worker into a byte-identical CSV and the same figures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemoOrders } from '../src/job-types/report/seed.ts';
import { startTestService, type TestService } from './support/service.ts';

const ROWS = 60_000;
/** Small chunks make the crash test's report long enough (60 checkpoints) to be killed in the middle. */
const CHUNK = 1_000;
const ROOT = path.join(import.meta.dirname, '..');
/** The base of links the API and the workers hand out; requests go to the test server instead. */
const PUBLIC_URL = 'http://longhaul.test';

let t: TestService;
let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'longhaul-report-api-'));
  t = await startTestService({
    roles: ['api'],
    env: {
      LONGHAUL_PUBLIC_URL: PUBLIC_URL,
      LONGHAUL_DATA_DIR: dir,
      LONGHAUL_REPORT_CHUNK_SIZE: String(CHUNK),
      LONGHAUL_REPORT_SOURCES: 'demo_orders,vip:demo_orders_vip',
    },
  });
  await seedDemoOrders(t.service.pool, ROWS);
  await t.service.pool.query(`CREATE VIEW demo_orders_vip AS SELECT * FROM demo_orders WHERE amount > 1000`);
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await t.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A `longhaul worker` process on the test database, sharing the data dir (so the artifact storage) with the API. */
function startWorker(): ChildProcess {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'longhaul.js'), 'worker'], {
    env: {
      ...process.env,
      DATABASE_URL: t.db.url,
      LONGHAUL_PUBLIC_URL: PUBLIC_URL,
      LONGHAUL_DATA_DIR: dir,
      LONGHAUL_REPORT_CHUNK_SIZE: String(CHUNK),
      LONGHAUL_LEASE_SECONDS: '10',
      LONGHAUL_LOG_LEVEL: 'warn',
      LONGHAUL_WORKER_CONCURRENCY: '2',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

async function waitFor<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface JobBody {
  id: string;
  status: string;
  progress: { processed: number; total: number | null };
  result: { rows: number; summary: unknown; artifacts: Array<{ name: string; url: string; size: number }> } | null;
  error: unknown;
}

async function submit(input: unknown, key?: string): Promise<Response> {
  return t.api('/v1/jobs', { method: 'POST', json: { type: 'report', input }, ...(key === undefined ? {} : { key }) });
}

async function job(id: string): Promise<JobBody> {
  return (await (await t.api(`/v1/jobs/${id}`)).json()) as JobBody;
}

async function finished(id: string, seconds = 60): Promise<JobBody> {
  return waitFor(`job ${id} to finish`, seconds, async () => {
    const j = await job(id);
    if (j.status === 'FAILED') throw new Error(`job failed: ${JSON.stringify(j.error)}`);
    return j.status === 'COMPLETED' ? j : undefined;
  });
}

const INPUT = {
  source: 'demo_orders',
  group_by: ['region', 'status'],
  metrics: ['quantity', 'amount'],
  formats: ['pdf', 'csv'],
};

describe('report input', () => {
  it.each([
    ['a source outside the allow-list', { ...INPUT, source: 'tenants' }, 'input.source'],
    ["another tenant's source", { ...INPUT, source: 'demo_orders_vip' }, 'input.source'],
    ['an unknown group_by column', { ...INPUT, group_by: ['nope'] }, 'input.group_by.0'],
    ['a text metric', { ...INPUT, metrics: ['region'] }, 'input.metrics.0'],
    ['an unknown filter column', { ...INPUT, filters: { colour: 'red' } }, 'input.filters.colour'],
    ['a filter value of the wrong type', { ...INPUT, filters: { quantity: 'many' } }, 'input.filters.quantity'],
    ['a reversed range', { ...INPUT, filters: { from: '2025-01-01', to: '2024-01-01' } }, 'input.filters.to'],
    ['a bad date', { ...INPUT, filters: { from: 'yesterday' } }, 'input.filters.from'],
    ['an unknown format', { ...INPUT, formats: ['xlsx'] }, 'input.formats.0'],
    ['SQL in a column name', { ...INPUT, group_by: ['region"; DROP TABLE jobs; --'] }, 'input.group_by.0'],
  ])('refuses %s with a 422 naming the field, and creates nothing', async (_name, input, field) => {
    const res = await submit(input);
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { errors: Array<{ field: string; message: string }> };
    expect(problem.errors.map((e) => e.field)).toContain(field);
    const { rows } = await t.service.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM jobs WHERE type = 'report'`,
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('lets a tenant use the sources allowed to it by name', async () => {
    const vip = await t.newTenant('vip');
    const res = await submit({ ...INPUT, source: 'demo_orders_vip', formats: ['csv'] }, vip.api_key);
    expect(res.status).toBe(202);
    await t.service.pool.query(`UPDATE jobs SET status = 'CANCELLED' WHERE type = 'report'`);
    await t.service.pool.query(`DELETE FROM jobs WHERE type = 'report'`);
  });
});

describe('report run', () => {
  let worker: ChildProcess;
  let reference: JobBody;
  beforeAll(async () => {
    worker = startWorker();
    const res = await submit(INPUT);
    expect(res.status).toBe(202);
    reference = await finished(((await res.json()) as JobBody).id);
  }, 90_000);

  it('completes with the right totals and signed links; artifacts download with the key or the link only', async () => {
    const { rows } = await t.service.pool.query<{ n: number; a: string }>(
      'SELECT count(*)::int AS n, sum(amount)::text AS a FROM demo_orders',
    );
    expect(reference.result?.rows).toBe(rows[0]?.n);
    expect(reference.progress).toEqual({ processed: ROWS, total: ROWS, percent: 100 });
    expect(reference.result?.summary).toMatchObject({ metrics: { amount: { sum: rows[0]?.a } } });

    const list = (await (await t.api(`/v1/jobs/${reference.id}/artifacts`)).json()) as {
      data: Array<{ name: string; size: number; url: string; content_type: string }>;
    };
    expect(list.data.map((a) => [a.name, a.content_type])).toEqual([
      ['report.csv', 'text/csv; charset=utf-8'],
      ['report.pdf', 'application/pdf'],
    ]);
    const csv = list.data[0];
    if (csv === undefined) throw new Error('no csv');
    const direct = await t.api(`/v1/jobs/${reference.id}/artifacts/report.csv`);
    expect(direct.status).toBe(200);
    expect(direct.headers.get('content-disposition')).toBe('attachment; filename="report.csv"');
    const bytes = Buffer.from(await direct.arrayBuffer());
    expect(bytes.length).toBe(csv.size);
    expect(bytes.toString('utf8').split('\r\n')).toHaveLength(ROWS + 2);

    // The signed link needs no API key; the link in the job's result works too.
    const signed = await fetch(csv.url.replace(PUBLIC_URL, t.url));
    expect(signed.status).toBe(200);
    expect(Buffer.from(await signed.arrayBuffer()).equals(bytes)).toBe(true);
    const fromResult = reference.result?.artifacts.find((a) => a.name === 'report.pdf');
    const pdf = await fetch((fromResult?.url ?? '').replace(PUBLIC_URL, t.url));
    expect(pdf.status).toBe(200);
    expect(
      Buffer.from(await pdf.arrayBuffer())
        .subarray(0, 5)
        .toString(),
    ).toBe('%PDF-');

    // A link for one artifact does not open another; a tampered link opens nothing; another tenant sees nothing.
    expect((await fetch(csv.url.replace(PUBLIC_URL, t.url).replace(/report\.csv$/, 'report.pdf'))).status).toBe(401);
    expect(
      (await fetch(csv.url.replace(PUBLIC_URL, t.url).replace(/\.([^./]+)\/report\.csv$/, '.x$1/report.csv'))).status,
    ).toBe(401);
    const other = await t.newTenant();
    expect((await t.api(`/v1/jobs/${reference.id}/artifacts`, { key: other.api_key })).status).toBe(404);
    expect((await t.api(`/v1/jobs/${reference.id}/artifacts/report.csv`, { key: other.api_key })).status).toBe(404);
    expect((await t.api(`/v1/jobs/${reference.id}/artifacts/report.csv`, { key: 'lh_nope' })).status).toBe(401);
  });

  it('survives kill -9 of its worker: another worker resumes from the checkpoint, same CSV bytes and figures', async () => {
    const res = await submit(INPUT);
    const id = ((await res.json()) as JobBody).id;
    // Kill the worker once a few checkpoints are committed and well before the end.
    await waitFor('a few checkpoints', 60, async () => {
      const j = await job(id);
      return j.progress.processed >= 10 * CHUNK ? j : undefined;
    });
    worker.kill('SIGKILL');
    await once(worker, 'exit');
    const atKill = await job(id);
    expect(atKill.status).toBe('RUNNING');
    expect(atKill.progress.processed).toBeLessThan(ROWS);

    const { rows: before } = await t.service.pool.query<{ processed: number }>(
      'SELECT processed FROM jobs WHERE id = $1',
      [id],
    );
    startWorker();
    const done = await finished(id, 90);
    expect(done.result?.rows).toBe(ROWS);
    expect(done.result?.summary).toEqual(reference.result?.summary);
    // The resumed run started at the checkpoint, not at zero.
    const { rows: events } = await t.service.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM job_events WHERE job_id = $1 AND kind = 'progress'`,
      [id],
    );
    expect(events[0]?.n ?? 0).toBeLessThanOrEqual(ROWS / CHUNK + 1);
    expect(before[0]?.processed ?? 0).toBeGreaterThan(0);

    const a = await readFile(path.join(dir, 'artifacts', 'jobs', reference.id, 'report.csv'));
    const b = await readFile(path.join(dir, 'artifacts', 'jobs', id, 'report.csv'));
    expect(b.equals(a)).toBe(true);
  }, 120_000);
});
