/** Starts longhaul in-process against a fresh test database, on a free port on 127.0.0.1. */
import { loadConfig, type Config } from '../../src/config.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startService, type Role, type Service } from '../../src/service.ts';
import { createTenant, type CreatedTenant } from '../../src/tenants/repository.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { spec } from './spec.ts';

export interface TestService {
  service: Service;
  db: TestDatabase;
  url: string;
  config: Config;
  tenant: CreatedTenant;
  /** fetch against the service with the tenant's API key; throws when the response does not match openapi.yaml. */
  api(path: string, init?: RequestInit & { json?: unknown; key?: string }): Promise<Response>;
  newTenant(name?: string): Promise<CreatedTenant>;
  stop(): Promise<void>;
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export async function startTestService(
  opts: { env?: Record<string, string>; roles?: Role[]; db?: TestDatabase } = {},
): Promise<TestService> {
  const db = opts.db ?? (await createTestDatabase());
  const config = loadConfig({
    DATABASE_URL: db.url,
    PORT: '0',
    HOST: '127.0.0.1',
    LONGHAUL_LOG_LEVEL: process.env.LONGHAUL_TEST_LOG_LEVEL ?? 'silent',
    LONGHAUL_ADMIN_TOKEN: ADMIN_TOKEN,
    LONGHAUL_PG_POOL_MAX: '10',
    LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
    ...opts.env,
  });
  const service = await startService({ config, roles: opts.roles ?? ['api'], log: createLogger(config.logLevel) });
  const url = service.url ?? '';
  const tenant = await createTenant(service.pool, `tenant-${Math.random().toString(36).slice(2)}`);
  const api: TestService['api'] = async (path, init = {}) => {
    const { json, key, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${key ?? tenant.api_key}`);
    if (json !== undefined) headers.set('content-type', 'application/json');
    const res = await fetch(url + path, {
      ...rest,
      headers,
      body: json === undefined ? rest.body : JSON.stringify(json),
    });
    // Every response the tests see must be one openapi.yaml describes.
    await spec().check(rest.method ?? 'GET', path, res);
    return res;
  };
  return {
    service,
    db,
    url,
    config,
    tenant,
    api,
    newTenant: (name) => createTenant(service.pool, name ?? `tenant-${Math.random().toString(36).slice(2)}`),
    stop: async () => {
      await service.stop();
      if (opts.db === undefined) await db.drop();
    },
  };
}
