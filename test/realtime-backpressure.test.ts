/**
 * Backpressure: a client that stops reading while a job produces many checkpoints does not make the
 * server buffer without bound (the hub's per-subscriber queue and the transport's buffer stay small
 * while the events keep coming), and once it has taken no data for two ping intervals it is closed.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COALESCE_LAG, PAGE_SIZE, type SubscriberStats } from '../src/realtime/hub.ts';
import { runningJob, until, writeProgressBatch } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';

/** Short pings, so a stalled client is found dead within seconds. */
const PING_SECONDS = 1;
/** Checkpoints per statement: below the coalescing lag, so a client that keeps up is sent every one (and its buffers fill). */
const BATCH = 50;
/** Upper bound on the events produced while filling the client's socket buffers (a few MB on loopback). */
const MAX_EVENTS = 120_000;
/** Generous bound on what the transport may hold in user space (its high-water mark plus one write). */
const MAX_BUFFERED_BYTES = 256 * 1024;

let t: TestService;
/** A second service with pings far apart, to watch a stalled WebSocket before its missing pongs get it closed. */
let quiet: TestService;
beforeAll(async () => {
  [t, quiet] = await Promise.all([
    startTestService({ env: { LONGHAUL_STREAM_PING_SECONDS: String(PING_SECONDS) } }),
    startTestService({ env: { LONGHAUL_STREAM_PING_SECONDS: '60' } }),
  ]);
});
afterAll(async () => Promise.all([t.stop(), quiet.stop()]));

/** Opens the events endpoint on a raw socket and stops reading as soon as the response has begun. */
async function stalledClient(svc: TestService, path: string, transport: 'sse' | 'websocket'): Promise<net.Socket> {
  const { port } = new URL(svc.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const headers =
    transport === 'sse'
      ? ['Accept: text/event-stream']
      : [
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          'Sec-WebSocket-Version: 13',
        ];
  socket.write(
    [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      `Authorization: Bearer ${svc.tenant.api_key}`,
      ...headers,
      '',
      '',
    ].join('\r\n'),
  );
  const head = await new Promise<string>((resolve) =>
    socket.once('data', (d: Buffer) => resolve(d.toString('latin1'))),
  );
  expect(head).toMatch(transport === 'sse' ? /^HTTP\/1\.1 200/ : /^HTTP\/1\.1 101/);
  socket.pause();
  return socket;
}

function subscriber(svc: TestService, jobId: string): SubscriberStats | undefined {
  return svc.service.realtime?.stats().subscribers.find((s) => s.jobId === jobId);
}

/**
 * Produces checkpoints until the server's write to the stalled client waits, then many more; checks
 * that the subscription took nothing more on and that its queue and buffer stayed bounded throughout.
 */
async function stallAndPileUp(svc: TestService, id: string): Promise<void> {
  let produced = 0;
  let maxQueued = 0;
  let maxBuffered = 0;
  const sample = () => {
    const s = subscriber(svc, id);
    if (s === undefined) throw new Error('the subscription ended early');
    maxQueued = Math.max(maxQueued, s.queued);
    maxBuffered = Math.max(maxBuffered, s.bufferedBytes);
    return s;
  };
  while (sample().writeWaitingMs < 200) {
    if (produced >= MAX_EVENTS)
      throw new Error(`the client never stalled after ${produced} events: ${JSON.stringify(sample())}`);
    const seq = await writeProgressBatch(svc.service.pool, id, BATCH, MAX_EVENTS * 2);
    produced += BATCH;
    // Paced by the server until the stall: the next batch once this one would not leave the subscriber past
    // the coalescing lag, so it is sent every event (its bytes fill the buffers) however fast the writes run.
    await until('the server to take the batch', () => {
      const s = sample();
      return seq - s.sentSeq <= COALESCE_LAG - BATCH || s.writeWaitingMs > 0;
    });
  }
  const atStall = sample();
  for (let i = 0; i < 20; i++) {
    await writeProgressBatch(svc.service.pool, id, BATCH * 4, MAX_EVENTS * 2);
    produced += BATCH * 4;
    sample();
  }
  const stalled = sample();
  expect(stalled.sent).toBe(atStall.sent);
  expect(maxQueued).toBeLessThanOrEqual(PAGE_SIZE);
  expect(maxBuffered).toBeLessThanOrEqual(MAX_BUFFERED_BYTES);
  expect(produced - stalled.sent).toBeGreaterThan(4000);
}

async function closedByServer(socket: net.Socket): Promise<void> {
  socket.resume();
  await new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())));
}

describe('a client that stops reading', () => {
  it('SSE: the queue stays bounded while events pile up, and the client is closed once it has taken nothing for two ping intervals', async () => {
    const id = await runningJob(t);
    const socket = await stalledClient(t, `/v1/jobs/${id}/events`, 'sse');
    await until('the subscription', () => subscriber(t, id) !== undefined);
    await stallAndPileUp(t, id);
    await until('the dead client to be closed', () => subscriber(t, id) === undefined, 4 * PING_SECONDS * 1000 + 2000);
    await closedByServer(socket);
  });

  it('WebSocket: the queue stays bounded while events pile up, and leaving releases the subscription', async () => {
    const id = await runningJob(quiet);
    const socket = await stalledClient(quiet, `/v1/jobs/${id}/events`, 'websocket');
    await until('the subscription', () => subscriber(quiet, id) !== undefined);
    await stallAndPileUp(quiet, id);
    socket.destroy();
    await until('the subscription to be released', () => subscriber(quiet, id) === undefined);
  });

  it('WebSocket: a client that answers no ping is closed', async () => {
    const id = await runningJob(t);
    const socket = await stalledClient(t, `/v1/jobs/${id}/events`, 'websocket');
    await until('the subscription', () => subscriber(t, id) !== undefined);
    await until(
      'the silent client to be closed',
      () => subscriber(t, id) === undefined,
      3 * PING_SECONDS * 1000 + 2000,
    );
    await closedByServer(socket);
  });
});
