/**
 * A client that never finishes its request does not hold a connection open: past
 * LONGHAUL_HEADERS_TIMEOUT_SECONDS (headers) or LONGHAUL_REQUEST_TIMEOUT_SECONDS (headers and body) the
 * server answers 408 and closes it, within about a second of the timeout (docs/requests.md), and the
 * half-sent request changes nothing.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';
import { waitFor } from './support/receiver.ts';
import { dbSnapshot } from './support/snapshot.ts';

const HEADERS_TIMEOUT_S = 1;
const REQUEST_TIMEOUT_S = 2;
/** Node checks the timeouts about once a second; beyond that, slack for a loaded machine. */
const GRACE_MS = 1000 + 2000;

let t: TestService;
beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_HEADERS_TIMEOUT_SECONDS: String(HEADERS_TIMEOUT_S),
      LONGHAUL_REQUEST_TIMEOUT_SECONDS: String(REQUEST_TIMEOUT_S),
    },
  });
});
afterAll(async () => t.stop());

/** Writes `data` on a raw connection and never more; resolves with what came back and when the server closed it. */
function stall(data: string, waitMs: number): Promise<{ reply: string; closedAfterMs: number | undefined }> {
  const { port } = new URL(t.url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(data));
    let reply = '';
    const giveUp = setTimeout(() => {
      socket.destroy();
      resolve({ reply, closedAfterMs: undefined });
    }, waitMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ reply, closedAfterMs: performance.now() - started });
    });
  });
}

const head = (path: string, extra: string) =>
  `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
  `Authorization: Bearer ${path.startsWith('/v1/admin/') ? ADMIN_TOKEN : t.tenant.api_key}\r\n` +
  `Content-Type: application/json\r\n${extra}`;

describe('slow clients', () => {
  it.each([
    ['POST /v1/jobs (the submit lane)', '/v1/jobs'],
    ['POST /v1/webhook-secrets (a Hono route)', '/v1/webhook-secrets'],
    ['POST /v1/admin/tenants', '/v1/admin/tenants'],
  ])('%s: half a body is answered 408 and closed after the request timeout', async (_name, path) => {
    const before = await dbSnapshot(t.service.pool);
    const limit = REQUEST_TIMEOUT_S * 1000 + GRACE_MS;
    const { reply, closedAfterMs } = await stall(
      head(path, 'Content-Length: 100\r\n\r\n{"type":"synthetic","input":'),
      limit + 5000,
    );
    expect(closedAfterMs, 'the connection was still open').toBeDefined();
    expect(closedAfterMs).toBeLessThan(limit);
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(await dbSnapshot(t.service.pool)).toEqual(before);
    // Logged and counted as the 408 it was, not as the 400 of a body cut short.
    const counted = await waitFor(`a 408 counted for ${path}`, async () => {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      const lines = text
        .split('\n')
        .filter((l) => l.startsWith('longhaul_http_requests_total{') && l.includes('"POST"'));
      return lines.some((l) => l.includes('status="408"')) ? lines : undefined;
    });
    expect(counted.filter((l) => l.includes('status="400"'))).toEqual([]);
  });

  it('headers that never end are answered 408 and closed after the headers timeout', async () => {
    const limit = HEADERS_TIMEOUT_S * 1000 + GRACE_MS;
    const { reply, closedAfterMs } = await stall(head('/v1/jobs', 'X-Slow: 1\r\n'), limit + 5000);
    expect(closedAfterMs, 'the connection was still open').toBeDefined();
    expect(closedAfterMs).toBeLessThan(limit);
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
  });
});
