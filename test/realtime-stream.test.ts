/**
 * Live progress on one API process: SSE and WebSocket, snapshot then events in order, resuming with
 * Last-Event-ID / ?after= without a gap or a repeat, progress that never goes back, stream tokens and
 * tenant isolation, and the refusals (406, 422, 204).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenSigner } from '../src/tokens/signer.ts';
import { transition } from './support/status.ts';
import { COALESCE_LAG } from '../src/realtime/hub.ts';
import {
  range,
  seqs,
  SseReader,
  until,
  writeProgress,
  writeProgressBatch,
  WsReader,
  type Message,
} from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

async function newJob(key?: string): Promise<string> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'synthetic', input: { chunks: 10, chunk_ms: 1 } },
    ...(key === undefined ? {} : { key }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

const auth = () => ({ authorization: `Bearer ${t.tenant.api_key}` });
const wsUrl = (path: string) => t.url.replace(/^http/, 'ws') + path;

async function streamToken(
  jobId: string,
): Promise<{ token: string; events_url: string; websocket_url: string; expires_at: string }> {
  const res = await t.api(`/v1/jobs/${jobId}/stream-token`, { method: 'POST' });
  expect(res.status).toBe(200);
  return (await res.json()) as { token: string; events_url: string; websocket_url: string; expires_at: string };
}

/** Runs a job through RUNNING, `steps` checkpoints of 10 and COMPLETED; returns the seq of each event. */
async function runJob(jobId: string, steps: number): Promise<void> {
  await transition(t.service.pool, jobId, 'RUNNING');
  for (let i = 1; i <= steps; i++) await writeProgress(t.service.pool, jobId, i * 10, steps * 10);
  await transition(t.service.pool, jobId, 'COMPLETED', { result: { ok: true } });
}

function expectMonotonicProgress(messages: Message[]): void {
  const processed = messages.filter((m) => m.type === 'progress').map((m) => m.processed ?? -1);
  expect(processed).toEqual([...processed].sort((a, b) => a - b));
}

describe('GET /v1/jobs/{id}/events over SSE', () => {
  it('sends a snapshot, then every checkpoint and status change in order, and ends after the terminal state', async () => {
    const id = await newJob();
    const { res, reader } = await SseReader.open(`${t.url}/v1/jobs/${id}/events`, auth());
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    if (reader === undefined) throw new Error(`no stream: ${res.status}`);
    await until('the snapshot', () => reader.messages.length >= 1);
    await runJob(id, 5);
    await reader.ended;
    const [snapshot, ...rest] = reader.messages;
    expect(snapshot?.type).toBe('snapshot');
    expect(snapshot?.job?.status).toBe('PENDING');
    expect(rest.map((m) => m.type)).toEqual([
      'status',
      'progress',
      'progress',
      'progress',
      'progress',
      'progress',
      'status',
    ]);
    expect(seqs(reader.messages)).toEqual(range((snapshot?.seq ?? 0) + 1, (snapshot?.seq ?? 0) + 7));
    expect(reader.ids).toEqual(reader.messages.map((m) => String(m.seq)));
    expect(rest.at(-1)).toMatchObject({ type: 'status', status: 'COMPLETED', result: { ok: true } });
    expect(rest.filter((m) => m.type === 'progress').at(-1)).toMatchObject({ processed: 50, total: 50, percent: 100 });
  });

  it('resumes with Last-Event-ID: what was missed, then live events, no gap and no repeat', async () => {
    const id = await newJob();
    const first = (await SseReader.open(`${t.url}/v1/jobs/${id}/events`, auth())).reader;
    if (first === undefined) throw new Error('no stream');
    await transition(t.service.pool, id, 'RUNNING');
    for (let i = 1; i <= 3; i++) await writeProgress(t.service.pool, id, i, 10);
    await until('three checkpoints', () => first.messages.filter((m) => m.type === 'progress').length === 3);
    first.close();
    const lastSeen = first.ids.at(-1) ?? '';
    // Committed while disconnected.
    for (let i = 4; i <= 6; i++) await writeProgress(t.service.pool, id, i, 10);
    const second = (await SseReader.open(`${t.url}/v1/jobs/${id}/events`, { ...auth(), 'last-event-id': lastSeen }))
      .reader;
    if (second === undefined) throw new Error('no stream');
    await until('the missed checkpoints', () => second.messages.length >= 3);
    for (let i = 7; i <= 8; i++) await writeProgress(t.service.pool, id, i, 10);
    await transition(t.service.pool, id, 'COMPLETED');
    await second.ended;
    expect(second.messages[0]?.type).not.toBe('snapshot');
    const all = [...seqs(first.messages), ...seqs(second.messages)];
    expect(all).toEqual(range(all[0] ?? 0, (all[0] ?? 0) + all.length - 1));
    expect(second.messages.filter((m) => m.type === 'progress').map((m) => m.processed)).toEqual([4, 5, 6, 7, 8]);

    // EventSource reconnects after the end; having seen the last event, it is told there is nothing more.
    const again = await fetch(`${t.url}/v1/jobs/${id}/events`, {
      headers: { ...auth(), accept: 'text/event-stream', 'last-event-id': second.ids.at(-1) ?? '' },
    });
    expect(again.status).toBe(204);
  });

  it('never shows progress going back, even when a retry starts again from an earlier checkpoint', async () => {
    const id = await newJob();
    const reader = (await SseReader.open(`${t.url}/v1/jobs/${id}/events`, auth())).reader;
    if (reader === undefined) throw new Error('no stream');
    await transition(t.service.pool, id, 'RUNNING');
    await writeProgress(t.service.pool, id, 50, 100);
    const afterFifty = await writeProgress(t.service.pool, id, 60, 100);
    await transition(t.service.pool, id, 'PENDING');
    await transition(t.service.pool, id, 'RUNNING');
    await writeProgress(t.service.pool, id, 40, 100); // resumed from an older checkpoint
    await writeProgress(t.service.pool, id, 70, 100);
    await transition(t.service.pool, id, 'COMPLETED');
    await reader.ended;
    expect(reader.messages.filter((m) => m.type === 'progress').map((m) => [m.processed, m.percent])).toEqual([
      [50, 50],
      [60, 60],
      [60, 60],
      [70, 70],
    ]);
    expect(reader.messages.filter((m) => m.type === 'status').map((m) => m.status)).toEqual([
      'RUNNING',
      'PENDING',
      'RUNNING',
      'COMPLETED',
    ]);

    // A client resuming after the 60 % checkpoint is held at 60 % too.
    const resumed = (await SseReader.open(`${t.url}/v1/jobs/${id}/events?after=${afterFifty}`, auth())).reader;
    if (resumed === undefined) throw new Error('no stream');
    await resumed.ended;
    expect(resumed.messages.filter((m) => m.type === 'progress').map((m) => m.processed)).toEqual([60, 70]);
    expectMonotonicProgress(resumed.messages);
  });

  it('coalesces progress for a client far behind, but sends every status change', async () => {
    const id = await newJob();
    const { rows } = await t.service.pool.query<{ event_seq: number }>('SELECT event_seq FROM jobs WHERE id = $1', [
      id,
    ]);
    const start = rows[0]?.event_seq ?? 0;
    await transition(t.service.pool, id, 'RUNNING');
    await writeProgressBatch(t.service.pool, id, 3 * COALESCE_LAG, 1000);
    await transition(t.service.pool, id, 'PENDING');
    await transition(t.service.pool, id, 'RUNNING');
    await writeProgressBatch(t.service.pool, id, 3 * COALESCE_LAG, 1000);
    await transition(t.service.pool, id, 'COMPLETED');
    const reader = (await SseReader.open(`${t.url}/v1/jobs/${id}/events?after=${start}`, auth())).reader;
    if (reader === undefined) throw new Error('no stream');
    await reader.ended;
    const statuses = reader.messages.filter((m) => m.type === 'status').map((m) => m.status);
    expect(statuses).toEqual(['RUNNING', 'PENDING', 'RUNNING', 'COMPLETED']);
    const progress = reader.messages.filter((m) => m.type === 'progress');
    expect(progress.length).toBeLessThan(10);
    expect(progress.at(-1)?.processed).toBe(6 * COALESCE_LAG);
    const s = seqs(reader.messages);
    expect(s).toEqual([...s].sort((a, b) => a - b));
    expect(new Set(s).size).toBe(s.length);
  });
});

describe('GET /v1/jobs/{id}/events over WebSocket', () => {
  it('streams with the API key header, and resumes with ?after= without a gap or a repeat', async () => {
    const id = await newJob();
    const first = new WsReader(wsUrl(`/v1/jobs/${id}/events`), auth());
    await first.opened;
    await until('the snapshot', () => first.messages.length >= 1);
    await transition(t.service.pool, id, 'RUNNING');
    for (let i = 1; i <= 4; i++) await writeProgress(t.service.pool, id, i, 10);
    await until('four checkpoints', () => first.messages.filter((m) => m.type === 'progress').length === 4);
    first.ws.close();
    await first.closed;
    const last = first.messages.at(-1)?.seq ?? 0;
    for (let i = 5; i <= 7; i++) await writeProgress(t.service.pool, id, i, 10);
    const second = new WsReader(wsUrl(`/v1/jobs/${id}/events?after=${last}`), auth());
    await second.opened;
    await until('the missed checkpoints', () => second.messages.length >= 3);
    await writeProgress(t.service.pool, id, 8, 10);
    await transition(t.service.pool, id, 'COMPLETED');
    const closed = await second.closed;
    expect(closed.code).toBe(1000);
    const all = [...seqs(first.messages), ...seqs(second.messages)];
    expect(all).toEqual(range(all[0] ?? 0, (all[0] ?? 0) + all.length - 1));
    expect(second.messages.at(-1)).toMatchObject({ type: 'status', status: 'COMPLETED' });
  });

  it('streams with a stream token (as a browser must), and the token is for that job only', async () => {
    const id = await newJob();
    const other = await newJob();
    const token = await streamToken(id);
    expect(token.websocket_url).toMatch(/^ws:\/\//);
    expect(Date.parse(token.expires_at)).toBeGreaterThan(Date.now());
    const reader = new WsReader(wsUrl(`/v1/jobs/${id}/events?token=${encodeURIComponent(token.token)}`));
    await reader.opened;
    await runJob(id, 2);
    expect((await reader.closed).code).toBe(1000);
    expect(reader.messages.map((m) => m.type)).toEqual(['snapshot', 'status', 'progress', 'progress', 'status']);

    // The same token for SSE works too; for another job it is refused.
    const sse = await fetch(`${t.url}/v1/jobs/${other}/events?token=${encodeURIComponent(token.token)}`, {
      headers: { accept: 'text/event-stream' },
    });
    expect(sse.status).toBe(403);
    const refused = new WsReader(wsUrl(`/v1/jobs/${other}/events?token=${encodeURIComponent(token.token)}`));
    await expect(refused.opened).rejects.toThrow();
  });
});

describe('authentication and refusals', () => {
  it('refuses another tenant, bad tokens and bad parameters, with problems', async () => {
    const id = await newJob();
    const stranger = await t.newTenant();
    const headers = { accept: 'text/event-stream' };
    const cases: Array<[string, Record<string, string>, number]> = [
      ['no credentials', {}, 401],
      ["another tenant's key", { authorization: `Bearer ${stranger.api_key}` }, 404],
      ['a bad after', { ...auth() }, 422],
      ['after beyond the last event', { ...auth() }, 422],
      ['a bad Last-Event-ID', { ...auth(), 'last-event-id': 'x' }, 422],
      ['no Accept', { ...auth(), accept: 'application/json' }, 406],
    ];
    const query: Record<string, string> = {
      'a bad after': '?after=-1',
      'after beyond the last event': '?after=999999',
    };
    for (const [name, h, status] of cases) {
      const res = await t.api(`/v1/jobs/${id}/events${query[name] ?? ''}`, {
        headers: { ...headers, ...h },
        key: h.authorization === undefined ? '' : undefined,
      });
      expect(res.status, name).toBe(status);
      expect(res.headers.get('content-type'), name).toContain('application/problem+json');
    }

    // A token: signed for another tenant's job (a stranger cannot get one: 404), expired, or for downloads.
    expect((await t.api(`/v1/jobs/${id}/stream-token`, { method: 'POST', key: stranger.api_key })).status).toBe(404);
    const signer = await TokenSigner.load(t.service.pool, undefined);
    const strangerToken = (await signer.sign('stream', { sub: stranger.id, job: id }, 60)).token;
    const expired = (await signer.sign('stream', { sub: t.tenant.id, job: id }, -60)).token;
    const download = (await signer.sign('artifact', { sub: t.tenant.id, job: id }, 60)).token;
    for (const [name, token, status] of [
      ["a token for another tenant's job", strangerToken, 404],
      ['an expired token', expired, 401],
      ['a download token', download, 401],
      ['garbage', 'not-a-jwt', 401],
    ] as const) {
      const res = await fetch(`${t.url}/v1/jobs/${id}/events?token=${encodeURIComponent(token)}`, { headers });
      expect(res.status, name).toBe(status);
    }
    // The header still rules the other routes: a token does not open them.
    const ownToken = (await streamToken(id)).token;
    expect((await fetch(`${t.url}/v1/jobs/${id}?token=${encodeURIComponent(ownToken)}`)).status).toBe(401);
  });

  it('sends a snapshot and ends at once for a job that has already finished', async () => {
    const id = await newJob();
    await transition(t.service.pool, id, 'CANCELLED');
    const reader = (await SseReader.open(`${t.url}/v1/jobs/${id}/events`, auth())).reader;
    if (reader === undefined) throw new Error('no stream');
    await reader.ended;
    expect(reader.messages.map((m) => [m.type, m.job?.status])).toEqual([['snapshot', 'CANCELLED']]);
  });
});
