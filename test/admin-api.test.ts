/**
 * The admin API's tenants, API keys and webhook secrets (the operations of the console's tenants page):
 * a key is created, used on two API processes, revoked, and refused by both within
 * LONGHAUL_AUTH_CACHE_SECONDS; unknown tenants and keys are 404s; bad bodies are problems that write
 * nothing; only the admin token opens it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';
import { dbSnapshot } from './support/snapshot.ts';
import { waitFor } from './support/worker.ts';

const AUTH_CACHE_SECONDS = 1;

let a: TestService;
let b: TestService;
beforeAll(async () => {
  const env = { LONGHAUL_AUTH_CACHE_SECONDS: String(AUTH_CACHE_SECONDS) };
  a = await startTestService({ env });
  b = await startTestService({ env, db: a.db });
});
afterAll(async () => {
  await b?.stop();
  await a?.stop();
});

const admin = (path: string, init: RequestInit & { json?: unknown } = {}) => a.api(path, { ...init, key: ADMIN_TOKEN });

interface Key {
  id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  api_key?: string;
}

describe('tenants', () => {
  it('lists every tenant and a created one appears', async () => {
    const name = `listed-${randomUUID()}`;
    const res = await admin('/v1/admin/tenants', { method: 'POST', json: { name } });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { id: string };
    const list = await admin('/v1/admin/tenants');
    expect(list.status).toBe(200);
    const { data } = (await list.json()) as { data: Array<{ id: string; name: string }> };
    expect(data.map((t) => t.id)).toEqual(expect.arrayContaining([a.tenant.id, b.tenant.id, created.id]));
    expect(data.find((t) => t.id === created.id)?.name).toBe(name);
  });

  it('is closed to a tenant key and to a wrong admin token', async () => {
    expect((await a.api('/v1/admin/tenants')).status).toBe(401);
    expect((await a.api('/v1/admin/tenants', { key: 'not-the-admin-token' })).status).toBe(401);
    expect((await a.api(`/v1/admin/tenants/${a.tenant.id}/api-keys`)).status).toBe(401);
  });
});

describe('API keys', () => {
  it('creates a key that works on every API process, and revoked, every process refuses it within the auth cache time', async () => {
    const tenant = await a.newTenant();
    const res = await admin(`/v1/admin/tenants/${tenant.id}/api-keys`, { method: 'POST', json: { name: 'ci' } });
    expect(res.status).toBe(201);
    const key = (await res.json()) as Key;
    expect(key).toMatchObject({ tenant_id: tenant.id, name: 'ci', revoked_at: null });
    expect(key.api_key).toMatch(/^lh_/);
    const apiKey = key.api_key ?? '';
    expect(apiKey.startsWith(key.prefix)).toBe(true);

    // Used on both processes, so each holds it in its auth cache when it is revoked.
    for (const s of [a, b]) expect((await s.api('/v1/jobs', { key: apiKey })).status).toBe(200);
    const listed = (await (await admin(`/v1/admin/tenants/${tenant.id}/api-keys`)).json()) as { data: Key[] };
    expect(listed.data.map((k) => k.id)).toEqual(expect.arrayContaining([key.id]));
    expect(listed.data.find((k) => k.id === key.id)?.last_used_at).not.toBeNull();
    // The tenant's first key is untouched by the new one.
    expect(listed.data).toHaveLength(2);
    expect((await a.api('/v1/jobs', { key: tenant.api_key })).status).toBe(200);

    const revokedAt = Date.now();
    const revoke = await admin(`/v1/admin/tenants/${tenant.id}/api-keys/${key.id}/revoke`, { method: 'POST' });
    expect(revoke.status).toBe(200);
    const revoked = (await revoke.json()) as Key;
    expect(revoked.revoked_at).not.toBeNull();
    for (const s of [a, b]) {
      await waitFor('401 for the revoked key', async () => (await s.api('/v1/jobs', { key: apiKey })).status === 401);
    }
    // A cached lookup lives AUTH_CACHE_SECONDS; the rest is the polling and a loaded machine.
    expect(Date.now() - revokedAt).toBeLessThan(AUTH_CACHE_SECONDS * 1000 + 3000);
    expect((await a.api('/v1/jobs', { key: tenant.api_key })).status).toBe(200);

    // Revoking again changes nothing, not even the time of the revocation.
    const again = await admin(`/v1/admin/tenants/${tenant.id}/api-keys/${key.id}/revoke`, { method: 'POST' });
    expect(((await again.json()) as Key).revoked_at).toBe(revoked.revoked_at);
  });

  it('answers 404 for an unknown tenant or key, and another tenant\u2019s key, writing nothing', async () => {
    const other = await a.newTenant();
    const [otherKey] = ((await (await admin(`/v1/admin/tenants/${other.id}/api-keys`)).json()) as { data: Key[] }).data;
    const before = await dbSnapshot(a.service.pool);
    const unknown = randomUUID();
    const cases: Array<[string, string, unknown]> = [
      ['GET', `/v1/admin/tenants/${unknown}/api-keys`, undefined],
      ['GET', '/v1/admin/tenants/not-a-uuid/api-keys', undefined],
      ['POST', `/v1/admin/tenants/${unknown}/api-keys`, { name: 'x' }],
      ['POST', `/v1/admin/tenants/${unknown}/webhook-secrets`, undefined],
      ['POST', '/v1/admin/tenants/not-a-uuid/webhook-secrets', undefined],
      ['POST', `/v1/admin/tenants/${a.tenant.id}/api-keys/${unknown}/revoke`, undefined],
      ['POST', `/v1/admin/tenants/${a.tenant.id}/api-keys/${otherKey?.id ?? ''}/revoke`, undefined],
      ['POST', `/v1/admin/tenants/${a.tenant.id}/api-keys/nope/revoke`, undefined],
    ];
    for (const [method, path, json] of cases) {
      const res = await admin(path, { method, json });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    expect(await dbSnapshot(a.service.pool)).toEqual(before);
    expect((await a.api('/v1/jobs', { key: other.api_key })).status).toBe(200);
  });

  it('refuses bad bodies with a problem and writes nothing', async () => {
    const before = await dbSnapshot(a.service.pool);
    const path = `/v1/admin/tenants/${a.tenant.id}/api-keys`;
    const send = (body: string | undefined, type = 'application/json') =>
      a.api(path, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': type },
      });
    const cases: Array<[string | undefined, string, number]> = [
      [undefined, 'application/json', 400],
      ['{"name":', 'application/json', 400],
      ['{}', 'application/json', 422],
      ['{"name":""}', 'application/json', 422],
      ['{"name":"   "}', 'application/json', 422],
      [JSON.stringify({ name: 'x'.repeat(201) }), 'application/json', 422],
      [JSON.stringify({ name: 'ci', extra: 1 }), 'application/json', 422],
      [JSON.stringify({ name: 5 }), 'application/json', 422],
      ['name=ci', 'application/x-www-form-urlencoded', 415],
    ];
    for (const [body, type, status] of cases) {
      const res = await send(body, type);
      expect(res.status, String(body)).toBe(status);
      const problem = (await res.json()) as { type: string; status: number };
      expect(problem.status).toBe(status);
      expect(problem.type).toMatch(/^https?:\/\//);
    }
    const rotate = await admin(`/v1/admin/tenants/${a.tenant.id}/webhook-secrets?grace_seconds=-1`, { method: 'POST' });
    expect(rotate.status).toBe(422);
    expect(await dbSnapshot(a.service.pool)).toEqual(before);
  });
});

describe('webhook secret', () => {
  it('rotates a tenant\u2019s secret: the new one signs beside the old one for the grace period', async () => {
    const tenant = await a.newTenant();
    const res = await admin(`/v1/admin/tenants/${tenant.id}/webhook-secrets?grace_seconds=60`, { method: 'POST' });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { id: string; secret: string; prefix: string };
    expect(created.secret).toMatch(/^whsec_/);
    const settings = (await (await a.api('/v1/webhook-settings', { key: tenant.api_key })).json()) as {
      secrets: Array<{ id: string; expires_at: string | null }>;
    };
    expect(settings.secrets.map((s) => s.id)).toContain(created.id);
    expect(settings.secrets).toHaveLength(2);
    expect(settings.secrets.find((s) => s.id !== created.id)?.expires_at).not.toBeNull();
    expect(
      (
        await a.service.pool.query('SELECT 1 FROM webhook_secrets WHERE id = $1 AND secret = $2', [
          created.id,
          created.secret,
        ])
      ).rowCount,
    ).toBe(1);
  });
});
