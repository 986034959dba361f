/**
 * The operator console in headless Chromium against a real service (API, worker and webhook dispatcher
 * in one process) and a real webhook receiver: sign-in as admin and as a tenant, live bars, cancel,
 * dead-letter replay, key revocation, webhook secret rotation, re-enabling an endpoint a 410 disabled,
 * tenant isolation, escaping of what jobs supply, and every page's width on a desktop and a phone.
 */
import type { Browser, Page } from 'playwright-core';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './support/browser.ts';
import { statusEvents } from './support/realtime.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';
import { waitFor } from './support/worker.ts';

let t: TestService;
let browser: Browser;
let rx: Receiver;
beforeAll(async () => {
  [t, browser, rx] = await Promise.all([
    startTestService({
      roles: ['api', 'worker'],
      env: { LONGHAUL_AUTH_CACHE_SECONDS: '1', LONGHAUL_CALLBACK_ALLOW: '127.0.0.1' },
    }),
    launchChromium(),
    startReceiver(),
  ]);
});
afterAll(async () => {
  await browser?.close();
  await rx?.close();
  await t?.stop();
});

async function signedIn(secret: string): Promise<Page> {
  const page = await browser.newPage();
  page.on('dialog', (d) => void d.accept());
  await page.goto(`${t.url}/console`);
  await page.getByLabel('Admin token or API key').fill(secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${t.url}/console`);
  return page;
}

async function submit(input: unknown, extra: Record<string, unknown> = {}, key = t.tenant.api_key): Promise<string> {
  const res = await t.api('/v1/jobs', { method: 'POST', key, json: { type: 'synthetic', input, ...extra } });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** How many times a job has started running (its RUNNING status events). */
const runs = async (id: string) =>
  (await statusEvents(t.service.pool, id)).filter((e) => e.status === 'RUNNING').length;

const jobStatus = async (id: string) => ((await (await t.api(`/v1/jobs/${id}`)).json()) as { status: string }).status;

describe('console', () => {
  it('asks for a token, sets a strict session cookie, and never shows the key', async () => {
    const page = await signedIn(t.tenant.api_key);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'longhaul_console');
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe('Strict');
    expect(session?.value).not.toContain(t.tenant.api_key);
    expect(page.url()).not.toContain(t.tenant.api_key);
    expect(await page.evaluate('JSON.stringify(localStorage)')).toBe('{}');
    const res = await page.request.get(`${t.url}/console`);
    expect(res.headers()['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${t.url}/console/sign-in`);
    await page.goto(`${t.url}/console/jobs`);
    expect(page.url()).toBe(`${t.url}/console/sign-in`);
    await page.close();
  });

  it('refuses a wrong token and a state change without the CSRF token', async () => {
    const page = await signedIn(ADMIN_TOKEN);
    const id = await submit({ chunks: 1000, chunk_ms: 50 });
    // A cross-site form cannot carry the session's CSRF token.
    const res = await page.request.post(`${t.url}/console/jobs/${id}/cancel`, { form: { csrf: 'guess' } });
    expect(res.status()).toBe(403);
    expect(await jobStatus(id)).not.toBe('CANCELLED');
    await t.api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
    const other = await browser.newPage();
    await other.goto(`${t.url}/console/sign-in`);
    await other.getByLabel('Admin token or API key').fill('lh_wrong');
    await other.getByRole('button', { name: 'Sign in' }).click();
    await other.waitForURL(/failed=1/);
    expect(await other.getByRole('alert').textContent()).toContain('not valid');
    await Promise.all([page.close(), other.close()]);
  });

  it('shows a submitted job in the list and moves its bar live to 100 %', async () => {
    const page = await signedIn(t.tenant.api_key);
    const id = await submit({ chunks: 20, chunk_ms: 150 });
    await page.goto(`${t.url}/console/jobs`);
    const bar = page.locator(`progress[data-job="${id}"]`);
    await bar.waitFor();
    expect(await bar.getAttribute('role')).toBe('progressbar');
    // Seen moving while the page stays loaded (no reload), then at 100.
    // Polled through locators: the page's CSP forbids the eval that waitForFunction needs.
    const now = async () => Number(await bar.getAttribute('aria-valuenow'));
    await expect.poll(now, { timeout: 20_000 }).toBeGreaterThan(0);
    expect(await now()).toBeLessThan(100);
    await expect.poll(now, { timeout: 20_000 }).toBe(100);
    await expect.poll(() => page.locator(`[data-status="${id}"]`).textContent()).toBe('COMPLETED');
    await page.close();
  });

  it('cancels a running job from its page', async () => {
    const page = await signedIn(t.tenant.api_key);
    const id = await submit({ chunks: 1000, chunk_ms: 50 });
    await waitFor('running', async () => ((await jobStatus(id)) === 'RUNNING' ? true : undefined));
    await page.goto(`${t.url}/console/jobs/${id}`);
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.waitForURL(/notice=/);
    expect(await page.getByRole('status').first().textContent()).toMatch(/[Cc]ancel/);
    await waitFor('cancelled', async () => ((await jobStatus(id)) === 'CANCELLED' ? true : undefined));
    await page.close();
  });

  it('replays a dead job from the dead-letter page and it runs again', async () => {
    const page = await signedIn(t.tenant.api_key);
    const id = await submit({ chunks: 2, chunk_ms: 1, fail_attempts: 1, permanent: true });
    await waitFor('dead', async () => ((await jobStatus(id)) === 'FAILED' ? true : undefined));
    expect(await runs(id)).toBe(1);
    await page.goto(`${t.url}/console/dead-letters`);
    await page.getByLabel(`Select job ${id}`).check();
    await page.getByRole('button', { name: 'Replay selected' }).click();
    await page.waitForURL(/notice=replayed/);
    // The synthetic job fails permanently on every first attempt: it runs, and is dead again.
    await waitFor('ran again', async () => ((await runs(id)) === 2 ? true : undefined));
    await page.close();
  });

  it('replays every dead job matching the whole filter, and none outside it', async () => {
    const page = await signedIn(t.tenant.api_key);
    const dead = async () => {
      const id = await submit({ chunks: 2, chunk_ms: 1, fail_attempts: 1, permanent: true });
      await waitFor('dead', async () => ((await jobStatus(id)) === 'FAILED' ? true : undefined));
      return id;
    };
    const [old, recent] = [await dead(), await dead()];
    // The old one died two hours ago: outside a "dead since an hour ago" filter.
    await t.service.pool.query(`UPDATE jobs SET dead_lettered_at = now() - interval '2 hours' WHERE id = $1`, [old]);
    const since = new Date(Date.now() - 3600_000).toISOString().slice(0, 16);
    await page.goto(`${t.url}/console/dead-letters`);
    await page.getByLabel('Dead since (UTC)').fill(since);
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/since=/);
    expect(await page.getByLabel(`Select job ${old}`).count()).toBe(0);
    await page.getByRole('button', { name: 'Replay all matching the filter' }).click();
    await page.waitForURL(/notice=replayed/);
    await waitFor('the recent one ran again', async () => ((await runs(recent)) === 2 ? true : undefined));
    expect(await runs(old)).toBe(1);
    expect(await jobStatus(old)).toBe('FAILED');
    await page.close();
  });

  it('revokes a key and the API answers 401 with it', async () => {
    const tenant = await t.newTenant();
    const page = await signedIn(ADMIN_TOKEN);
    await page.goto(`${t.url}/console/tenants/${tenant.id}`);
    await page.getByLabel('New key name').fill('ci');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = (await page.locator('.secret pre').textContent())?.trim() ?? '';
    expect(key).toMatch(/^lh_/);
    expect((await t.api('/v1/jobs', { key })).status).toBe(200);
    await page.getByRole('button', { name: 'Revoke ci' }).click();
    await page.waitForURL(/notice=key-revoked/);
    await waitFor('401', async () => ((await t.api('/v1/jobs', { key })).status === 401 ? true : undefined));
    await page.close();
  });

  it('rotates a tenant\u2019s webhook secret: shown once, the old one signs beside it for the grace period', async () => {
    const tenant = await t.newTenant();
    const page = await signedIn(ADMIN_TOKEN);
    await page.goto(`${t.url}/console/tenants/${tenant.id}`);
    await page.getByRole('button', { name: 'Rotate webhook secret' }).click();
    const secret = (await page.locator('.secret pre').textContent())?.trim() ?? '';
    expect(secret).toMatch(/^whsec_/);
    expect(secret).not.toBe(tenant.webhook_secret);
    const settings = (await (await t.api('/v1/webhook-settings', { key: tenant.api_key })).json()) as {
      secrets: Array<{ prefix: string; expires_at: string | null }>;
    };
    expect(settings.secrets.map((s) => s.prefix)).toEqual([secret.slice(0, 10), tenant.webhook_secret.slice(0, 10)]);
    expect(settings.secrets.map((s) => s.expires_at === null)).toEqual([true, false]);
    await page.close();
  });

  it('gives a tenant session 404 for another tenant\u2019s job, and the admin sees it', async () => {
    const other = await t.newTenant();
    const id = await submit({ chunks: 1, chunk_ms: 1 }, {}, other.api_key);
    const page = await signedIn(t.tenant.api_key);
    const res = await page.goto(`${t.url}/console/jobs/${id}`);
    expect(res?.status()).toBe(404);
    for (const action of ['cancel', 'retry', 'stream-token']) {
      const csrf = await page.evaluate(`document.querySelector('meta[name="csrf-token"]').content`);
      const r = await page.request.post(`${t.url}/console/jobs/${id}/${action}`, {
        headers: { 'x-csrf-token': String(csrf) },
      });
      expect(r.status()).toBe(404);
    }
    await page.goto(`${t.url}/console/jobs`);
    expect(await page.locator(`progress[data-job="${id}"]`).count()).toBe(0);
    expect((await page.goto(`${t.url}/console/tenants`))?.status()).toBe(404);
    const admin = await signedIn(ADMIN_TOKEN);
    expect((await admin.goto(`${t.url}/console/jobs/${id}`))?.status()).toBe(200);
    await Promise.all([page.close(), admin.close()]);
  });

  it('renders what a job supplied as text', async () => {
    const evil = `"><script>window.pwned=1</script><img src=x onerror="window.pwned=2">`;
    const id = await submit({ chunks: 1, chunk_ms: 1 }, { metadata: { note: evil, [evil]: evil } });
    const page = await signedIn(t.tenant.api_key);
    await page.goto(`${t.url}/console/jobs/${id}`);
    expect(await page.locator('pre.json').nth(1).textContent()).toContain(JSON.stringify(evil).slice(1, -1));
    expect(await page.evaluate('window.pwned')).toBeUndefined();
    expect(await page.locator('main script, main img').count()).toBe(0);
    await page.close();
  });

  it('enables an endpoint a 410 disabled, and its waiting delivery is then delivered', async () => {
    let gone = true;
    rx.on('/gone', (_n, _r, res) => void (gone ? res.writeHead(410).end('gone') : undefined));
    const url = `${rx.url}/gone`;
    const first = await submit({ chunks: 1, chunk_ms: 1 }, { callback_url: url });
    const endpoint = await waitFor('the endpoint disabled', async () => {
      const res = await t.api('/v1/webhook-endpoints');
      const { data } = (await res.json()) as {
        data: Array<{ id: string; endpoint: string; disabled_at: string | null }>;
      };
      return data.find((e) => e.endpoint === url && e.disabled_at !== null);
    });
    // A second job's webhook waits for the endpoint, unattempted.
    const held = await submit({ chunks: 1, chunk_ms: 1 }, { callback_url: url });
    await waitFor('the second job done', async () => ((await jobStatus(held)) === 'COMPLETED' ? true : undefined));
    const deliveries = async () =>
      (
        await t.service.pool.query<{ job_id: string; status: string }>(
          'SELECT job_id, status FROM webhook_deliveries WHERE job_id = ANY($1::uuid[]) ORDER BY created_at',
          [[first, held]],
        )
      ).rows;
    await waitFor('both deliveries queued', async () => ((await deliveries()).length === 2 ? true : undefined));
    expect((await deliveries()).map((d) => d.status)).toEqual(['PENDING', 'PENDING']);
    expect(rx.to('/gone')).toHaveLength(1);

    const page = await signedIn(t.tenant.api_key);
    await page.goto(`${t.url}/console/endpoints`);
    // Without the session's CSRF token (a cross-site form), and from another tenant's session: refused.
    expect(
      (await page.request.post(`${t.url}/console/endpoints/${endpoint.id}/enable`, { form: { csrf: 'x' } })).status(),
    ).toBe(403);
    const other = await signedIn((await t.newTenant()).api_key);
    const csrf = String(await other.evaluate(`document.querySelector('meta[name="csrf-token"]').content`));
    expect(
      (
        await other.request.post(`${t.url}/console/endpoints/${endpoint.id}/enable`, {
          headers: { 'x-csrf-token': csrf },
        })
      ).status(),
    ).toBe(404);
    expect(rx.to('/gone')).toHaveLength(1);

    gone = false;
    await page.getByRole('button', { name: `Enable ${url}` }).click();
    await page.waitForURL(/notice=endpoint-enabled/);
    expect(await page.getByRole('status').first().textContent()).toContain('enabled');
    expect(await page.getByRole('button', { name: `Enable ${url}` }).count()).toBe(0);
    await waitFor('both delivered', async () =>
      (await deliveries()).every((d) => d.status === 'SUCCEEDED') ? true : undefined,
    );
    // The receiver got the held webhook, signed with the tenant's secret (checked by standardwebhooks).
    const verified = rx
      .to('/gone')
      .slice(1)
      .map(
        (r) =>
          new Webhook(t.tenant.webhook_secret).verify(r.body, {
            'webhook-id': String(r.headers['webhook-id']),
            'webhook-timestamp': String(r.headers['webhook-timestamp']),
            'webhook-signature': String(r.headers['webhook-signature']),
          }) as { data: { id: string } },
      );
    expect(verified.map((v) => v.data.id).sort()).toEqual([first, held].sort());
    await Promise.all([page.close(), other.close()]);
  });

  it('fits every page in the width of a desktop and of a phone', async () => {
    const id = await submit({ chunks: 1, chunk_ms: 1 }, { metadata: { note: 'x'.repeat(300) } });
    const page = await signedIn(ADMIN_TOKEN);
    for (const width of [1280, 375]) {
      await page.setViewportSize({ width, height: 800 });
      for (const path of [
        '/console',
        '/console/jobs',
        `/console/jobs/${id}`,
        '/console/dead-letters',
        '/console/endpoints',
        '/console/workers',
        '/console/tenants',
        `/console/tenants/${t.tenant.id}`,
      ]) {
        const res = await page.goto(`${t.url}${path}`);
        expect(res?.status(), path).toBe(200);
        const fits = await page.evaluate('document.scrollingElement.scrollWidth <= window.innerWidth');
        expect(fits, `${path} at ${width} px`).toBe(true);
      }
    }
    await page.close();
  });
});
