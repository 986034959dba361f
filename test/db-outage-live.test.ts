/**
 * The database being away, with real processes on a Postgres of this file's own (test/support/own-postgres.ts):
 * `longhaul api` and `longhaul worker` started while it is down wait for it (alive, not ready, 503 with
 * Retry-After, the outage logged once) and become ready and run a job once it answers; an SSE client
 * following a job across a stop and start of Postgres gets every event once, in order, to the end, with
 * and without reconnecting (Last-Event-ID); `npm start` told to stop while it waits exits 0 at once; a
 * database that refuses the credentials is not waited for (exit 1).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOwnPostgres, type OwnPostgres } from './support/own-postgres.ts';
import { statusEvents } from './support/realtime.ts';
import { freePort, runLonghaul, runLonghaulToEnd, runNpmStart, type LonghaulProcess } from './support/process.ts';
import { waitFor } from './support/receiver.ts';

/** What a process logs, once, when it starts without its database (src/db/listener.ts). */
const WAITING = 'database unreachable; waiting until it answers';
const RESTORED = 'database connection restored';

let pgServer: OwnPostgres;
let dir: string;
let env: Record<string, string>;
let url: string;
let key: string;
const running: LonghaulProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'longhaul-live-outage-'));
  // A directory of its own: as root, Postgres runs as another user, who must reach it.
  pgServer = await startOwnPostgres(await mkdtemp(path.join(tmpdir(), 'longhaul-live-outage-db-')));
  env = {
    DATABASE_URL: pgServer.url,
    HOST: '127.0.0.1',
    PORT: String(await freePort()),
    LONGHAUL_LOG_LEVEL: 'info',
    LONGHAUL_DATA_DIR: path.join(dir, 'data'),
    LONGHAUL_LEASE_SECONDS: '3',
    LONGHAUL_MONITOR_INTERVAL_SECONDS: '1',
    LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
  };
  url = `http://127.0.0.1:${env.PORT}`;
  const created = await runLonghaulToEnd(['tenants', 'create', 'live', '--json'], env);
  expect(created.code, created.stderr).toBe(0);
  key = (JSON.parse(created.stdout) as { api_key: string }).api_key;
}, 120_000);

afterAll(async () => {
  for (const p of running) p.kill('SIGKILL');
  await pgServer?.destroy();
  await rm(dir, { recursive: true, force: true });
});

function start(args: string[]): LonghaulProcess {
  const p = runLonghaul(args, env);
  running.push(p);
  return p;
}

const auth = () => ({ authorization: `Bearer ${key}` });

async function submit(input: Record<string, number>): Promise<string> {
  const res = await fetch(`${url}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
    body: JSON.stringify({ type: 'synthetic', input }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function jobStatus(id: string): Promise<string | undefined> {
  const res = await fetch(`${url}/v1/jobs/${id}`, { headers: auth() }).catch(() => undefined);
  return res?.status === 200 ? ((await res.json()) as { status: string }).status : undefined;
}

let api: LonghaulProcess;
let worker: LonghaulProcess;

it('api and worker started while Postgres is down wait for it, then become ready and run a job', async () => {
  await pgServer.stop('fast');
  api = start(['api']);
  worker = start(['worker']);
  for (const p of [api, worker]) await p.waitForLog((l) => l.msg === WAITING, 60_000);

  // Waiting: alive, not ready (naming the database), and every API request a 503 to retry.
  await waitFor(
    'the API answers while it waits',
    async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true,
    30_000,
  );
  const ready = await fetch(`${url}/readyz`);
  expect(ready.status).toBe(503);
  expect(((await ready.json()) as { checks: Record<string, string> }).checks.database).toBe('failing');
  const refused = await fetch(`${url}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json', 'idempotency-key': 'while-down' },
    body: JSON.stringify({ type: 'synthetic', input: { chunks: 1 } }),
  });
  expect(refused.status).toBe(503);
  expect(refused.headers.get('retry-after')).not.toBeNull();
  expect(((await refused.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/service-unavailable');

  await pgServer.start();
  await api.waitForLog((l) => l.msg === 'longhaul API listening', 60_000);
  await worker.waitForLog((l) => l.msg === 'longhaul worker started', 60_000);
  expect((await fetch(`${url}/readyz`)).status).toBe(200);
  const id = await submit({ chunks: 3, chunk_ms: 10 });
  await waitFor('the job completed', async () => (await jobStatus(id)) === 'COMPLETED', 30_000);

  for (const p of [api, worker]) {
    // Logged once though tried many times, and its end once.
    expect(p.logs().filter((l) => l.msg === WAITING)).toHaveLength(1);
    const restored = p.logs().filter((l) => l.msg === RESTORED);
    expect(restored).toHaveLength(1);
    expect(restored[0]?.attempts).toBeGreaterThan(1);
    expect(p.logs().filter((l) => Number(l.level) >= 50)).toEqual([]);
  }
}, 120_000);

interface SseEvent {
  event: string;
  id: number;
  data: { type: string; seq: number; status?: string; job?: { status: string } };
}

/**
 * Follows a job's SSE stream to its end as a client should: on a dropped connection or a 503, it
 * reconnects with `Last-Event-ID` (after Retry-After). `dropWhen` lets the test cut the connection itself.
 */
async function follow(
  id: string,
  opts: { dropWhen?: () => boolean } = {},
): Promise<{ events: SseEvent[]; connections: number; refusals: number }> {
  const events: SseEvent[] = [];
  let connections = 0;
  let refusals = 0;
  const deadline = performance.now() + 90_000;
  for (;;) {
    if (performance.now() > deadline) throw new Error(`stream of ${id} did not end: ${JSON.stringify(events)}`);
    const last = events.at(-1)?.id;
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/jobs/${id}/events`, {
      headers: {
        ...auth(),
        accept: 'text/event-stream',
        ...(last === undefined ? {} : { 'last-event-id': String(last) }),
      },
      signal: abort.signal,
    }).catch(() => undefined);
    if (res === undefined || res.status === 503) {
      refusals++;
      const wait = Number(res?.headers.get('retry-after') ?? '1');
      await res?.body?.cancel();
      await new Promise((r) => setTimeout(r, Math.min(wait, 1) * 500));
      continue;
    }
    if (res.status === 204) return { events, connections, refusals };
    expect(res.status).toBe(200);
    connections++;
    let buffer = '';
    let dropped = false;
    const watchdog = setInterval(() => {
      if (opts.dropWhen?.() === true && !dropped) {
        dropped = true;
        abort.abort();
      }
    }, 20);
    try {
      const decoder = new TextDecoder();
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const fields = new Map<string, string>();
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
          }
          if (!fields.has('data')) continue;
          events.push({
            event: fields.get('event') ?? '',
            id: Number(fields.get('id')),
            data: JSON.parse(fields.get('data') ?? '') as SseEvent['data'],
          });
        }
      }
    } catch {
      // The connection broke (or was cut): resume.
    } finally {
      clearInterval(watchdog);
    }
    if (events.at(-1)?.data.status === 'COMPLETED') return { events, connections, refusals };
    if (dropped) opts.dropWhen = undefined;
  }
}

it('an SSE stream across a Postgres stop and start gets every event once, in order, to COMPLETED', async () => {
  const id = await submit({ chunks: 40, chunk_ms: 100 });
  let outage = false;
  const staying = follow(id);
  const reconnecting = follow(id, { dropWhen: () => outage });
  await waitFor('the job is running', async () => (await jobStatus(id)) === 'RUNNING', 30_000);
  await pgServer.stop('fast');
  outage = true;
  await waitFor('the API knows', async () => (await fetch(`${url}/readyz`)).status === 503, 10_000);
  // The dropped client retries into 503s while the database is away.
  await pgServer.start();
  const [a, b] = await Promise.all([staying, reconnecting]);

  const check = new pg.Client({ connectionString: pgServer.url });
  await check.connect();
  try {
    const rows = await statusEvents(check, id);
    const statuses = rows.map((r) => r.status);
    expect(statuses.at(-1)).toBe('COMPLETED');
    for (const run of [a, b]) {
      const seqs = run.events.map((e) => e.id);
      expect(run.events[0]?.event).toBe('snapshot');
      // One more than the one before: no gap, no repeat, across the outage (and the reconnection).
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe((seqs[i - 1] as number) + 1);
      for (const e of run.events) expect(e.data.seq).toBe(e.id);
      // Every status change after the snapshot, as recorded.
      const first = seqs[0] as number;
      expect(run.events.filter((e) => e.event === 'status').map((e) => e.data.status)).toEqual(
        rows.filter((r) => r.seq > first).map((r) => r.status),
      );
      expect(run.events.at(-1)?.data.status).toBe('COMPLETED');
    }
    expect(b.connections).toBeGreaterThan(1);
    expect(b.refusals).toBeGreaterThan(0);
  } finally {
    await check.end();
  }
}, 120_000);

it('a database that refuses the credentials is not waited for: start-up fails with exit 1', async () => {
  const u = new URL(pgServer.url);
  u.password = 'wrong';
  const p = runLonghaul(['worker'], { ...env, DATABASE_URL: u.toString() });
  running.push(p);
  expect(await p.exited).toBe(1);
  expect(p.logs().some((l) => l.msg === 'start-up failed')).toBe(true);
}, 60_000);

it('`npm start` told to stop while it waits for Postgres exits 0 at once', async () => {
  for (const p of [api, worker]) {
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }
  await pgServer.stop('fast');
  const all = runNpmStart(env, dir);
  running.push(all);
  await all.waitForLog((l) => l.msg === WAITING, 60_000);
  await waitFor(
    'the API answers while it waits',
    async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 503,
    30_000,
  );
  const told = performance.now();
  all.kill('SIGTERM');
  expect(await all.exited).toBe(0);
  expect(performance.now() - told).toBeLessThan(5_000);
}, 90_000);
