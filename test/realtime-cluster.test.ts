/**
 * Live progress across processes: two `longhaul api` processes and a separate `longhaul worker` running
 * a synthetic job. Clients on either API process see every event of the job in order (one LISTEN per
 * API process carries them), a client that switches process mid-job with Last-Event-ID misses and
 * repeats nothing, and a token signed by one process is accepted by the other.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import { createPool, type Pool } from '../src/db/pool.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { freePort, runLonghaul, type LonghaulProcess } from './support/process.ts';
import { seqs, SseReader, statusEvents, until, WsReader, type Message } from './support/realtime.ts';
import { spawnWorker, type WorkerProcess } from './support/worker.ts';

let db: TestDatabase;
let pool: Pool;
let tenant: CreatedTenant;
const apis: Array<{ url: string; proc: LonghaulProcess }> = [];
let worker: WorkerProcess;

async function startApi(): Promise<{ url: string; proc: LonghaulProcess }> {
  const port = await freePort();
  const proc = runLonghaul(['api'], {
    DATABASE_URL: db.url,
    PORT: String(port),
    HOST: '127.0.0.1',
    LONGHAUL_LOG_LEVEL: 'warn',
  });
  const url = `http://127.0.0.1:${port}`;
  await until(
    'the API process to be ready',
    async () =>
      await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      ),
    30_000,
  );
  return { url, proc };
}

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, 2);
  tenant = await createTenant(pool, 'realtime-cluster');
  apis.push(...(await Promise.all([startApi(), startApi()])));
  worker = await spawnWorker(db.url);
});

afterAll(async () => {
  await worker.kill('SIGTERM');
  for (const a of apis) {
    a.proc.kill('SIGTERM');
    await a.proc.exited;
  }
  await pool.end();
  await db.drop();
});

const auth = () => ({ authorization: `Bearer ${tenant.api_key}` });

/**
 * A stream after sequence `from`: increasing sequence numbers (a progress superseded before the stream
 * read it is skipped, docs/live-progress.md), every status change the job committed after `from`,
 * progress never going back, to COMPLETED at the last chunk.
 */
function expectWholeStream(messages: Message[], from: number, statusSeqs: number[]): void {
  const s = seqs(messages);
  expect(s.every((x, i) => x > (i === 0 ? from : (s[i - 1] ?? Infinity)))).toBe(true);
  expect(messages.filter((m) => m.type === 'status').map((m) => m.seq)).toEqual(statusSeqs.filter((x) => x > from));
  expect(messages.at(-1)).toMatchObject({ type: 'status', status: 'COMPLETED' });
  const processed = messages.filter((m) => m.type === 'progress').map((m) => m.processed ?? -1);
  expect(processed).toEqual([...processed].sort((a, b) => a - b));
  expect(processed.at(-1)).toBe(CHUNKS);
}

const CHUNKS = 30;

it('streams a job run by a worker process to clients on two API processes, over SSE and WebSocket, across a reconnect', async () => {
  const [a, b] = apis;
  if (a === undefined || b === undefined) throw new Error('no API processes');
  const created = await fetch(`${a.url}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'synthetic', input: { chunks: CHUNKS, chunk_ms: 60 } }),
  });
  expect(created.status).toBe(202);
  const id = ((await created.json()) as { id: string }).id;

  // A token signed by A opens a WebSocket on B.
  const tokenRes = await fetch(`${a.url}/v1/jobs/${id}/stream-token`, { method: 'POST', headers: auth() });
  const { token } = (await tokenRes.json()) as { token: string };
  const ws = new WsReader(`${b.url.replace(/^http/, 'ws')}/v1/jobs/${id}/events?token=${encodeURIComponent(token)}`);
  const sseA = (await SseReader.open(`${a.url}/v1/jobs/${id}/events`, auth())).reader;
  const moving = (await SseReader.open(`${b.url}/v1/jobs/${id}/events`, auth())).reader;
  if (sseA === undefined || moving === undefined) throw new Error('no stream');
  await ws.opened;

  // The third client leaves B mid-job and resumes on A.
  await until('a few checkpoints on B', () => moving.messages.filter((m) => m.type === 'progress').length >= 5, 20_000);
  moving.close();
  await moving.ended;
  const resumed = (
    await SseReader.open(`${a.url}/v1/jobs/${id}/events`, { ...auth(), 'last-event-id': moving.ids.at(-1) ?? '' })
  ).reader;
  if (resumed === undefined) throw new Error('no resumed stream');

  await Promise.all([sseA.ended, resumed.ended, ws.closed]);
  const statuses = await statusEvents(pool, id);
  const statusSeqs = statuses.map((r) => Number(r.seq));
  for (const m of [sseA.messages, ws.messages]) {
    expect(m[0]?.type).toBe('snapshot');
    expectWholeStream(m, m[0]?.seq ?? 0, statusSeqs);
  }
  const [first, ...restOfMoving] = moving.messages;
  expect(first?.type).toBe('snapshot');
  expect(resumed.messages[0]?.type).not.toBe('snapshot');
  expectWholeStream([...restOfMoving, ...resumed.messages], first?.seq ?? 0, statusSeqs);
  expect(seqs(ws.messages).at(-1)).toBe(seqs(sseA.messages).at(-1));

  // Each process (two API processes, one worker) holds one LISTEN connection, however many clients it serves.
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'longhaul-listen'`,
  );
  expect(rows[0]?.n).toBe(3);
});

it('refuses another tenant on any process', async () => {
  const [a, b] = apis;
  if (a === undefined || b === undefined) throw new Error('no API processes');
  const stranger = await createTenant(pool, 'stranger');
  const created = await fetch(`${a.url}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } }),
  });
  const id = ((await created.json()) as { id: string }).id;
  const res = await fetch(`${b.url}/v1/jobs/${id}/events`, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${stranger.api_key}` },
  });
  expect(res.status).toBe(404);
  const token = await fetch(`${b.url}/v1/jobs/${id}/stream-token`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stranger.api_key}` },
  });
  expect(token.status).toBe(404);
});
