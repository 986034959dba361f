/**
 * Secrets stay out of logs (docs/operations.md, "Logs"): a real service (API and worker) logging at
 * `trace` into memory serves every kind of credential-bearing request (an artifact token in the path,
 * a stream token in the query, API keys and the admin token in headers, new keys and secrets in
 * answers, a webhook callback URL with a token in its query), then the whole log and the metrics page
 * are searched for each secret.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenSigner } from '../src/tokens/signer.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/observability/logger.ts';
import { redactSecrets } from '../src/observability/redact.ts';
import { startService, type Service } from '../src/service.ts';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { ADMIN_TOKEN } from './support/service.ts';

let db: TestDatabase;
let service: Service;
let tenant: CreatedTenant;
let url: string;
const lines: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const config = loadConfig({
    DATABASE_URL: db.url,
    PORT: '0',
    HOST: '127.0.0.1',
    LONGHAUL_LOG_LEVEL: 'trace',
    LONGHAUL_ADMIN_TOKEN: ADMIN_TOKEN,
    LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
    LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.2',
    LONGHAUL_WEBHOOK_CONNECT_TIMEOUT_SECONDS: '0.5',
    LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  service = await startService({ config, roles: ['api', 'worker'], log: createLogger('trace', sink) });
  url = service.url ?? '';
  tenant = await createTenant(service.pool, `logs-${Date.now()}`);
});
afterAll(async () => {
  await service.stop();
  await db.drop();
});

const key = () => ({ authorization: `Bearer ${tenant.api_key}` });

describe('secrets in logs', () => {
  it('redacts every credential a URL or a log line could carry', () => {
    expect(redactSecrets('"path":"/artifacts/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/report.pdf"')).toBe(
      '"path":"/artifacts/[redacted]/report.pdf"',
    );
    expect(redactSecrets('/artifacts/not-a-jwt/x.csv')).toBe('/artifacts/[redacted]/x.csv');
    expect(redactSecrets('/v1/jobs/1/artifacts/report.pdf')).toBe('/v1/jobs/1/artifacts/report.pdf');
    expect(redactSecrets('https://h/cb?a=1&token=abc&Signature=d#f')).toBe(
      'https://h/cb?a=1&token=[redacted]&Signature=[redacted]#f',
    );
    expect(redactSecrets('postgres://user:pw@db/x')).toBe('postgres://[redacted]@db/x');
    expect(redactSecrets(`k=${'lh_' + 'a'.repeat(43)} s=whsec_${'b'.repeat(44)}`)).toBe('k=[redacted] s=[redacted]');
  });

  it('never writes a secret of any credential-bearing request to the log or a metric label', async () => {
    const secrets: Record<string, string> = { 'API key': tenant.api_key, 'admin token': ADMIN_TOKEN };

    const created = await fetch(`${url}/v1/admin/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: `logs-new-${Date.now()}` }),
    });
    expect(created.status).toBe(201);
    const other = (await created.json()) as { api_key: string; webhook_secret: string };
    secrets["new tenant's API key"] = other.api_key;
    secrets["new tenant's webhook secret"] = other.webhook_secret;

    const rotated = await fetch(`${url}/v1/webhook-secrets`, { method: 'POST', headers: key() });
    expect(rotated.status).toBe(201);
    secrets['rotated webhook secret'] = ((await rotated.json()) as { secret: string }).secret;

    // A job whose callback URL carries a token; its webhook fails (nothing listens), so the dispatcher logs.
    const callbackToken = 'cb-secret-0123456789abcdef';
    secrets['callback URL token'] = callbackToken;
    const submitted = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: { ...key(), 'content-type': 'application/json' },
      body: JSON.stringify({
        type: 'synthetic',
        input: { chunks: 1, chunk_ms: 0 },
        callback_url: `http://127.0.0.1:9/hook?token=${callbackToken}`,
      }),
    });
    expect(submitted.status).toBe(202);
    const jobId = ((await submitted.json()) as { id: string }).id;

    const streamToken = (
      (await (await fetch(`${url}/v1/jobs/${jobId}/stream-token`, { method: 'POST', headers: key() })).json()) as {
        token: string;
      }
    ).token;
    secrets['stream token'] = streamToken;
    const stream = await fetch(`${url}/v1/jobs/${jobId}/events?token=${encodeURIComponent(streamToken)}`, {
      headers: { accept: 'text/event-stream' },
    });
    expect(stream.status).toBe(200);
    await stream.body?.cancel();
    const badStream = 'not-a-stream-token-0123456789';
    secrets['a wrong stream token'] = badStream;
    expect((await fetch(`${url}/v1/jobs/${jobId}/events?token=${badStream}`)).status).toBe(401);

    const signer = await TokenSigner.load(service.pool, service.config.signingSecret);
    const artifactToken = (await signer.sign('artifact', { sub: tenant.id, job: jobId, name: 'report.pdf' }, 60)).token;
    secrets['artifact token'] = artifactToken;
    expect((await fetch(`${url}/artifacts/${artifactToken}/report.pdf`)).status).toBe(404);
    const badArtifact = 'not-an-artifact-token-0123456789';
    secrets['a wrong artifact token'] = badArtifact;
    expect((await fetch(`${url}/artifacts/${badArtifact}/report.pdf`)).status).toBe(401);

    // The webhook was attempted (and failed): the dispatcher has had its chance to log the callback URL.
    for (let attempts = 0; attempts === 0;) {
      const { rows } = await service.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
          WHERE d.job_id = $1`,
        [jobId],
      );
      attempts = rows[0]?.n ?? 0;
      if (attempts === 0) await new Promise((r) => setTimeout(r, 100));
    }

    const metrics = await (await fetch(`${url}/metrics`)).text();
    const log = lines.join('');
    expect(log).toContain('/artifacts/[redacted]/report.pdf');
    for (const [what, secret] of Object.entries(secrets)) {
      expect(log.includes(secret), `the log holds the ${what}`).toBe(false);
      expect(metrics.includes(secret), `the metrics hold the ${what}`).toBe(false);
    }
  });
});
