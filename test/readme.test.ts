/**
 * The README's examples, in order, as a newcomer runs them: `npm start` on a fresh checkout (embedded
 * PostgreSQL, no DATABASE_URL, the default data dir `./.longhaul`; only the two ports are free ones), then
 * the CLI with the service stopped, then `longhaul api` and `longhaul worker` side by side on the same
 * embedded database for the report (docs/report.md), a webhook (docs/webhooks.md) and live progress
 * (docs/live-progress.md). Every process is a real child process; every response is checked against
 * openapi.yaml.
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPdf } from './support/pdf.ts';
import { freePort, runLonghaul, runLonghaulToEnd, runNpmStart, type LonghaulProcess } from './support/process.ts';
import { SseReader } from './support/realtime.ts';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { spec } from './support/spec.ts';

const ADMIN_TOKEN = 'readme-admin-token-0123456789';
const DEMO_ROWS = 20_000;
/** A first start creates the cluster (initdb): slow on a loaded machine. */
const START_MS = 90_000;

interface Job {
  id: string;
  status: string;
  progress: { processed: number; total: number | null; percent: number | null };
  result: unknown;
}

let checkout: string;
let env: Record<string, string>;
let api: string;
const running: LonghaulProcess[] = [];

beforeAll(async () => {
  // The checkout a newcomer runs `npm start` in: the data dir is `./.longhaul` under it. As root the
  // embedded server runs as the `postgres` user, who must be able to enter it, as a clone's folder allows.
  checkout = await mkdtemp(path.join(tmpdir(), 'longhaul-readme-'));
  await chmod(checkout, 0o755);
  const port = await freePort();
  env = { PORT: String(port), LONGHAUL_EMBEDDED_PG_PORT: String(await freePort()) };
  api = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  // Drained, not killed: the process that started the embedded server stops it on the way out.
  for (const p of running.reverse()) {
    p.kill('SIGTERM');
    await p.exited;
  }
  await rm(checkout, { recursive: true, force: true });
});

function start(p: LonghaulProcess): LonghaulProcess {
  running.push(p);
  return p;
}

async function stop(p: LonghaulProcess): Promise<number> {
  p.kill('SIGTERM');
  const code = await p.exited;
  running.splice(running.indexOf(p), 1);
  return code;
}

/** The README's `curl`, through fetch; the response checked against openapi.yaml. */
async function call(
  pathname: string,
  init: { method?: string; key?: string; json?: unknown; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.key !== undefined) headers.authorization = `Bearer ${init.key}`;
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  const url = `${api}${pathname}`;
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers,
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });
  await spec().check(init.method ?? 'GET', url, res);
  return res;
}

async function getJob(key: string, id: string): Promise<Job> {
  const res = await call(`/v1/jobs/${id}`, { key });
  expect(res.status).toBe(200);
  return (await res.json()) as Job;
}

/** Polls the job as the README does until `done` holds. */
function poll(key: string, id: string, done: (job: Job) => boolean, ms = 30_000): Promise<Job> {
  return waitFor(
    `job ${id}`,
    async () => {
      const job = await getJob(key, id);
      return done(job) ? job : undefined;
    },
    ms,
  );
}

const ended = (job: Job) => ['COMPLETED', 'FAILED', 'CANCELLED'].includes(job.status);

describe('the README on a fresh checkout', () => {
  let key: string;
  let acme: { id: string; name: string; api_key: string; webhook_secret: string };
  let globex: typeof acme;

  it(
    '`npm start`: creates the default tenant, runs, lists and cancels jobs as "Try it" shows',
    { timeout: 150_000 },
    async () => {
      const service = start(runNpmStart(env, checkout));
      await service.waitForLog((l) => l.msg === 'longhaul started', START_MS);

      // KEY=$(cat .longhaul/default-api-key): printed once, never logged.
      key = (await readFile(path.join(checkout, '.longhaul', 'default-api-key'), 'utf8')).trim();
      expect(key).toMatch(/^lh_/);
      expect(service.stderr().split(key).length - 1).toBe(1);
      expect(service.stdout()).not.toContain(key);

      // curl -si localhost:3000/v1/jobs … -H 'Idempotency-Key: demo-1' -d '{"type":"synthetic",…}'
      const submit = () =>
        call('/v1/jobs', {
          method: 'POST',
          key,
          headers: { 'idempotency-key': 'demo-1' },
          json: { type: 'synthetic', input: { chunks: 20, chunk_ms: 500 } },
        });
      const accepted = await submit();
      expect(accepted.status).toBe(202);
      const job = (await accepted.json()) as Job;
      expect(job.status).toBe('PENDING');
      expect(accepted.headers.get('location')).toBe(`/v1/jobs/${job.id}`);
      // The same request with the same key: the same job, nothing new.
      const again = await submit();
      expect(((await again.json()) as Job).id).toBe(job.id);

      // Poll: RUNNING, progress.percent.
      const runningJob = await poll(key, job.id, (j) => j.status === 'RUNNING' && (j.progress.percent ?? 0) > 0);
      expect(runningJob.progress.total).toBe(20);

      // List, newest first, filtered on RUNNING.
      const list = await call('/v1/jobs?status=RUNNING&limit=10', { key });
      expect(list.status).toBe(200);
      const listed = ((await list.json()) as { data: Job[] }).data;
      expect(listed.map((j) => j.id)).toEqual([job.id]);

      // Cancel: 200 cancelled, or 202 stopping; either way it ends CANCELLED, short of its 20 chunks.
      const cancel = await call(`/v1/jobs/${job.id}/cancel`, { method: 'POST', key });
      expect([200, 202]).toContain(cancel.status);
      const cancelled = await poll(key, job.id, ended);
      expect(cancelled.status).toBe('CANCELLED');
      expect(cancelled.progress.processed).toBeLessThan(20);

      // A job polled to the end: COMPLETED at 100 %.
      const short = await call('/v1/jobs', {
        method: 'POST',
        key,
        json: { type: 'synthetic', input: { chunks: 4, chunk_ms: 20 } },
      });
      expect(short.status).toBe(202);
      const done = await poll(key, ((await short.json()) as Job).id, ended);
      expect(done.status).toBe('COMPLETED');
      expect(done.progress).toMatchObject({ processed: 4, total: 4, percent: 100 });

      expect(await stop(service)).toBe(0);
    },
  );

  it(
    '`longhaul tenants create acme --json` works with the service stopped, straight into the database',
    { timeout: 120_000 },
    async () => {
      const run = await runLonghaulToEnd(['tenants', 'create', 'acme', '--json'], env, checkout);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      acme = JSON.parse(run.stdout) as typeof acme;
      expect(acme).toMatchObject({ name: 'acme', api_key: expect.stringMatching(/^lh_/) as unknown });
      expect(acme.webhook_secret).toMatch(/^whsec_/);
    },
  );

  describe('`longhaul api` and `longhaul worker` side by side', () => {
    let receiver: Receiver;
    beforeAll(async () => {
      receiver = await startReceiver();
      // As the webhooks documentation says for development: plain http to 127.0.0.1 is allowed only so.
      const roles = { ...env, LONGHAUL_CALLBACK_ALLOW: '127.0.0.1', LONGHAUL_ADMIN_TOKEN: ADMIN_TOKEN };
      // The api starts the embedded server; the worker finds it running and shares it.
      const apiRole = start(runLonghaul(['api'], roles, checkout));
      await apiRole.waitForLog((l) => l.msg === 'longhaul started', START_MS);
      const workerRole = start(runLonghaul(['worker'], roles, checkout));
      await workerRole.waitForLog((l) => l.msg === 'longhaul started', START_MS);
    }, 2 * START_MS);
    afterAll(async () => {
      // The worker first: the api process owns the embedded server.
      for (const p of [...running].reverse()) expect(await stop(p)).toBe(0);
      await receiver.close();
    });

    it('keeps the tenants and jobs of the first start; the admin API creates tenants', async () => {
      expect((await call('/v1/jobs?limit=10', { key })).status).toBe(200);
      expect((await call('/v1/jobs', { key: acme.api_key })).status).toBe(200);
      const created = await call('/v1/admin/tenants', {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        json: { name: 'globex' },
      });
      expect(created.status).toBe(201);
      globex = (await created.json()) as typeof globex;
      expect(Object.keys(globex).sort()).toEqual(['api_key', 'id', 'name', 'webhook_secret']);
    });

    it(
      '`demo seed` and a report job: COMPLETED, its PDF and CSV downloaded through their signed URLs',
      { timeout: 120_000 },
      async () => {
        const seed = await runLonghaulToEnd(['demo', 'seed', '--rows', String(DEMO_ROWS)], env, checkout);
        expect(seed.code).toBe(0);
        expect(seed.stdout).toContain(`demo_orders: ${DEMO_ROWS} rows`);

        const submitted = await call('/v1/jobs', {
          method: 'POST',
          key,
          json: {
            type: 'report',
            input: {
              source: 'demo_orders',
              title: 'Orders by region and category',
              group_by: ['region', 'category'],
              metrics: ['quantity', 'amount'],
              formats: ['pdf', 'csv'],
            },
          },
        });
        expect(submitted.status).toBe(202);
        const job = await poll(key, ((await submitted.json()) as Job).id, ended, 90_000);
        expect(job, 'the report job (its error, if it failed)').toMatchObject({ status: 'COMPLETED' });
        const artifacts = (job.result as { artifacts: Array<{ name: string; url: string }> }).artifacts;
        expect(artifacts.map((a) => a.name).sort()).toEqual(['report.csv', 'report.pdf']);

        // The signed links work without the API key, as a browser gets them.
        const download = async (name: string) => {
          const url = artifacts.find((a) => a.name === name)?.url ?? '';
          expect(url.startsWith(`${api}/artifacts/`)).toBe(true);
          const res = await fetch(url);
          expect(res.status).toBe(200);
          return Buffer.from(await res.arrayBuffer());
        };
        const csv = (await download('report.csv')).toString('utf8').split('\r\n');
        expect(csv[0]).toBe('id,created_at,customer,region,product,category,quantity,unit_price,amount,status');
        expect(csv).toHaveLength(DEMO_ROWS + 2); // header, rows, and the empty string after the last CRLF
        const pdfBytes = await download('report.pdf');
        const pdf = await readPdf(new Uint8Array(pdfBytes));
        expect(pdf.text).toContain('Orders by region and category');
        expect(pdf.text).toMatch(/Rows\s+20,000/);
        expect(pdf.text).toContain(`Page ${pdf.pages} of ${pdf.pages}`);

        // And with the API key, as the report example downloads it.
        const byKey = await call(`/v1/jobs/${job.id}/artifacts/report.pdf`, { key });
        expect(byKey.status).toBe(200);
        expect(Buffer.from(await byKey.arrayBuffer()).equals(pdfBytes)).toBe(true);
      },
    );

    it('sends a signed webhook to a local receiver that standardwebhooks verifies', async () => {
      const submitted = await call('/v1/jobs', {
        method: 'POST',
        key: acme.api_key,
        json: {
          type: 'synthetic',
          input: { chunks: 2, chunk_ms: 10 },
          callback_url: `${receiver.url}/hooks/longhaul`,
        },
      });
      expect(submitted.status).toBe(202);
      const { id } = (await submitted.json()) as Job;
      const [hook] = await waitFor(
        'the webhook',
        () => receiver.to('/hooks/longhaul').length > 0 && receiver.to('/hooks/longhaul'),
      );
      expect(hook).toBeDefined();
      const headers = Object.fromEntries(Object.entries(hook?.headers ?? {}).map(([k, v]) => [k, String(v)]));
      const event = new Webhook(acme.webhook_secret).verify(hook?.body ?? '', headers) as {
        type: string;
        data: Job;
      };
      expect(event.type).toBe('job.completed');
      expect(event.data).toMatchObject({ id, status: 'COMPLETED' });
      // Signed with acme's secret only: another tenant's does not verify it.
      expect(() => new Webhook(globex.webhook_secret).verify(hook?.body ?? '', headers)).toThrow();
    });

    it('streams live progress over SSE, from the worker process to the api process, to COMPLETED', async () => {
      const submitted = await call('/v1/jobs', {
        method: 'POST',
        key,
        json: { type: 'synthetic', input: { chunks: 5, chunk_ms: 200 } },
      });
      const { id } = (await submitted.json()) as Job;
      // curl -N localhost:3000/v1/jobs/$ID/events -H "Authorization: Bearer $KEY" -H 'Accept: text/event-stream'
      const { res, reader } = await SseReader.open(`${api}/v1/jobs/${id}/events`, { authorization: `Bearer ${key}` });
      expect(res.status).toBe(200);
      if (reader === undefined) throw new Error('no event stream');
      await reader.ended;
      const messages = reader.messages;
      expect(messages[0]?.type).toBe('snapshot');
      const progress = messages.filter((m) => m.type === 'progress');
      expect(progress.at(-1)).toMatchObject({ processed: 5, total: 5, percent: 100 });
      expect(progress.map((m) => m.processed)).toEqual(
        [...progress.map((m) => m.processed)].sort((a, b) => (a ?? 0) - (b ?? 0)),
      );
      expect(messages.at(-1)).toMatchObject({ type: 'status', status: 'COMPLETED' });
      // Increasing; a progress superseded before the stream read it may be skipped (docs/live-progress.md).
      const seqs = messages.map((m) => m.seq);
      expect(seqs.slice(1).every((s, i) => s > (seqs[i] ?? 0))).toBe(true);
    });
  });
});
