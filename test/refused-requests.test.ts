/**
 * A refused request changes nothing, on every state-changing endpoint (docs/requests.md): each
 * operation of openapi.yaml that may change state gets a truncated body, a body longer than its
 * Content-Length, malformed JSON and a wrong media type, on a raw connection; each is answered 4xx
 * and every table (longhaul's and pg-boss's job table) is the same before and after. Where the
 * request, sent whole, changes something, the test sends it whole last to show the comparison would
 * see a change. Secret and key rotation once created a secret on a truncated body.
 */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../src/tenants/repository.ts';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';
import { dbSnapshot } from './support/snapshot.ts';
import { stateChangingOperations, type StateChangingOperation } from './support/spec.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

/** A body each operation takes, sent whole; any other operation takes `{}` (or ignores it). */
const VALID_BODIES: Record<string, () => unknown> = {
  'POST /v1/jobs': () => ({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } }),
  'POST /v1/admin/tenants': () => ({ name: `refused-${randomUUID()}` }),
  'POST /v1/admin/tenants/{id}/api-keys': () => ({ name: 'refused' }),
  'PUT /v1/webhook-settings': () => ({ signature_scheme: 'v1a' }),
  'POST /v1/jobs/{id}/retry': () => ({ from: 'start' }),
  'POST /v1/jobs/batch': () => ({ jobs: [{ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } }] }),
  'POST /v1/jobs/cancel': () => ({ filter: { type: 'synthetic' } }),
  'POST /v1/schedules': () => ({
    name: `refused-${randomUUID()}`,
    cron: '0 2 * * *',
    job: { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } },
  }),
};

/** Operations that, sent whole, change a table here (the others need a failed job or delivery, or write nothing). */
const CHANGES_STATE = new Set([
  'POST /v1/jobs',
  'POST /v1/admin/tenants',
  'PUT /v1/webhook-settings',
  'POST /v1/jobs/{id}/cancel',
  'POST /v1/jobs/batch',
  'POST /v1/jobs/cancel',
  'POST /v1/webhook-secrets',
  'POST /v1/webhook-signing-keys',
  'POST /v1/admin/tenants/{id}/api-keys',
  'POST /v1/admin/tenants/{id}/webhook-secrets',
  'POST /v1/admin/tenants/{id}/api-keys/{key}/revoke',
  'POST /v1/schedules',
]);

/**
 * Sends raw bytes on a new connection and resolves with the reply once the server closes it. With
 * `halfClose`, the client then closes its side, so a body cut short never arrives in full.
 */
function raw(data: string, halfClose = true): Promise<string> {
  const { port } = new URL(t.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => (halfClose ? socket.end(data) : socket.write(data)));
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(reply));
  });
}

async function liveKey(): Promise<string> {
  const created = await createApiKey(t.service.pool, t.tenant.id, 'refused');
  if (created === undefined) throw new Error('the test tenant is gone');
  return created.key.id;
}

async function pendingJob(): Promise<string> {
  const res = await t.api('/v1/jobs', { method: 'POST', json: VALID_BODIES['POST /v1/jobs']?.() });
  return ((await res.json()) as { id: string }).id;
}

describe.each(stateChangingOperations().map((op) => [`${op.method} ${op.template}`, op] as const))(
  '%s',
  (name, op: StateChangingOperation) => {
    it('refuses a truncated body, a body longer than declared, malformed JSON and a wrong media type, changing nothing', async () => {
      // A job id names a PENDING job, which a refused cancel must leave PENDING (as a refused bulk cancel
      // must: every /v1/jobs/… operation finds one); an admin's tenant id names the test's tenant and a key
      // id a live key of it; other ids name nothing.
      const job = op.template.startsWith('/v1/jobs/') ? await pendingJob() : undefined;
      const path = (
        job !== undefined
          ? op.template.replace('{id}', job)
          : op.template
              .replace('/v1/admin/tenants/{id}', `/v1/admin/tenants/${t.tenant.id}`)
              .replace('{key}', op.template.includes('{key}') ? await liveKey() : '{key}')
      ).replace(/\{[^}]+\}/g, randomUUID());
      const body = JSON.stringify(VALID_BODIES[name]?.() ?? {});
      const auth = `Authorization: Bearer ${op.admin ? ADMIN_TOKEN : t.tenant.api_key}\r\n`;
      const request = (headers: string, sent: string) =>
        `${op.method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${auth}${headers}\r\n${sent}`;
      const json = 'Content-Type: application/json\r\n';
      const cases: Array<[string, string]> = [
        ['truncated', request(`${json}Content-Length: ${body.length + 20}\r\n`, body)],
        ['longer than declared', request(`${json}Content-Length: 5\r\n`, body)],
        ['malformed JSON', request(`${json}Content-Length: 5\r\n`, '{"a":')],
        ['wrong media type', request(`Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n`, body)],
      ];

      const before = await dbSnapshot(t.service.pool);
      for (const [what, bytes] of cases) {
        const reply = await raw(bytes);
        expect(reply.split('\r\n')[0], `${name}, ${what}`).toMatch(/^HTTP\/1\.1 4\d\d /);
        expect(await dbSnapshot(t.service.pool), `${name}, ${what}`).toEqual(before);
      }

      if (CHANGES_STATE.has(name)) {
        const reply = await raw(request(`${json}Content-Length: ${body.length}\r\n`, body), false);
        expect(reply.split('\r\n')[0], `${name}, sent whole`).toMatch(/^HTTP\/1\.1 2\d\d /);
        expect(await dbSnapshot(t.service.pool), `${name}, sent whole`).not.toEqual(before);
      }
    });
  },
);
