/**
 * The console overview's figures are read once per scope (every tenant, or one tenant) and shown to every
 * view of that scope for LONGHAUL_CONSOLE_OVERVIEW_SECONDS: a view meanwhile does not read the database, a
 * scope never sees another scope's figures, and with 0 every view reads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';

let kept: TestService;
let fresh: TestService;

beforeAll(async () => {
  kept = await startTestService({ env: { LONGHAUL_CONSOLE_OVERVIEW_SECONDS: '3600' } });
  fresh = await startTestService({ db: kept.db, env: { LONGHAUL_CONSOLE_OVERVIEW_SECONDS: '0' } });
});

afterAll(async () => {
  await fresh.stop();
  await kept.stop();
});

/** A console session's cookie for `secret` (the admin token or a tenant's API key). */
async function signIn(url: string, secret: string): Promise<string> {
  const res = await fetch(`${url}/console/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: url },
    body: new URLSearchParams({ secret }),
    redirect: 'manual',
  });
  expect(res.status).toBe(303);
  return (res.headers.getSetCookie().find((c) => c.startsWith('longhaul_console=')) ?? '').split(';')[0] ?? '';
}

/** The PENDING figure the overview shows. */
async function pending(url: string, cookie: string): Promise<string> {
  const res = await fetch(`${url}/console`, { headers: { cookie } });
  expect(res.status).toBe(200);
  const figure = /status=PENDING">PENDING<\/a><\/dt>\s*<dd>([^<]*)<\/dd>/.exec(await res.text())?.[1];
  expect(figure).toBeDefined();
  return figure ?? '';
}

async function submit(t: TestService, key: string): Promise<void> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } },
    key,
  });
  expect(res.status).toBe(202);
}

describe('console overview figures', () => {
  it('are shown to every view of a scope until they expire, and never to another scope', async () => {
    const admin = await signIn(kept.url, ADMIN_TOKEN);
    const other = await kept.newTenant();
    await submit(kept, kept.tenant.api_key);
    expect(await pending(kept.url, admin)).toBe('1');

    await submit(kept, kept.tenant.api_key);
    await submit(kept, other.api_key);
    // The admin's figures were read before these jobs: every view within the interval shows them.
    expect(await pending(kept.url, admin)).toBe('1');
    expect(await pending(kept.url, admin)).toBe('1');
    // Each tenant's scope is read for itself, now, and shows only its own jobs.
    expect(await pending(kept.url, await signIn(kept.url, kept.tenant.api_key))).toBe('2');
    expect(await pending(kept.url, await signIn(kept.url, other.api_key))).toBe('1');
  });

  it('are read at every view when the interval is 0', async () => {
    const admin = await signIn(fresh.url, ADMIN_TOKEN);
    const before = Number(await pending(fresh.url, admin));
    await submit(fresh, fresh.tenant.api_key);
    expect(Number(await pending(fresh.url, admin))).toBe(before + 1);
  });
});
