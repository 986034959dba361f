/**
 * The console's schedules page and a tenant's limits, in headless Chromium against a real API process:
 * pausing and resuming a schedule (confirmation, CSRF token, the API then agrees), editing a tenant's
 * limits as the admin (and POST /v1/jobs then answers 429), and tenant isolation of both.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './support/browser.ts';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';

let t: TestService;
let browser: Browser;
beforeAll(async () => {
  [t, browser] = await Promise.all([startTestService({ roles: ['api'] }), launchChromium()]);
});
afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

/** A signed-in page; `confirms` collects the confirmation texts the page asked for (each accepted). */
async function signedIn(secret: string): Promise<{ page: Page; confirms: string[] }> {
  const page = await browser.newPage();
  const confirms: string[] = [];
  page.on('dialog', (d) => {
    confirms.push(d.message());
    void d.accept();
  });
  await page.goto(`${t.url}/console`);
  await page.getByLabel('Admin token or API key').fill(secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${t.url}/console`);
  return { page, confirms };
}

const csrfOf = async (page: Page) =>
  String(await page.evaluate(`document.querySelector('meta[name="csrf-token"]').content`));

interface Schedule {
  id: string;
  paused: boolean;
  next_fire_at: string | null;
}

async function createSchedule(name: string, key = t.tenant.api_key): Promise<Schedule> {
  const res = await t.api('/v1/schedules', {
    method: 'POST',
    key,
    json: {
      name,
      cron: '0 3 * * *',
      timezone: 'Europe/Berlin',
      job: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } },
    },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as Schedule;
}

const scheduleOf = async (id: string, key = t.tenant.api_key) =>
  (await (await t.api(`/v1/schedules/${id}`, { key })).json()) as Schedule;

const limitsOf = async (tenantId: string) =>
  (await (await t.api(`/v1/admin/tenants/${tenantId}/limits`, { key: ADMIN_TOKEN })).json()) as {
    max_running_jobs: number | null;
    max_pending_jobs: number | null;
    submission_rate: { limit: number; window_seconds: number } | null;
  };

describe('console: schedules and tenant limits', () => {
  it('lists schedules with their next firing, and pauses and resumes one after a confirmation', async () => {
    const s = await createSchedule('nightly-report');
    const { page, confirms } = await signedIn(t.tenant.api_key);
    await page.getByRole('link', { name: 'Schedules' }).click();
    await page.waitForURL(`${t.url}/console/schedules`);
    const next = page.locator(`[data-next="${s.id}"] time`);
    expect(await next.getAttribute('datetime')).toBe(s.next_fire_at);

    await page.getByRole('button', { name: 'Pause nightly-report' }).click();
    await page.waitForURL(/notice=schedule-paused/);
    expect(confirms.at(-1)).toContain('Pause the schedule "nightly-report"');
    expect(await page.getByRole('status').first().textContent()).toContain('paused');
    expect(await scheduleOf(s.id)).toMatchObject({ paused: true, next_fire_at: null });
    expect(await page.locator(`[data-next="${s.id}"]`).textContent()).toBe('–');

    await page.getByRole('button', { name: 'Resume nightly-report' }).click();
    await page.waitForURL(/notice=schedule-resumed/);
    const resumed = await scheduleOf(s.id);
    expect(resumed.paused).toBe(false);
    expect(Date.parse(resumed.next_fire_at ?? '')).toBeGreaterThan(Date.now());
    expect(await next.getAttribute('datetime')).toBe(resumed.next_fire_at);
    await page.close();
  });

  it("refuses a pause without the CSRF token, and another tenant's schedule is a 404", async () => {
    const other = await t.newTenant();
    const theirs = await createSchedule('theirs', other.api_key);
    const mine = await createSchedule('mine');
    const { page } = await signedIn(t.tenant.api_key);
    expect(
      (await page.request.post(`${t.url}/console/schedules/${mine.id}/pause`, { form: { csrf: 'guess' } })).status(),
    ).toBe(403);
    expect((await scheduleOf(mine.id)).paused).toBe(false);

    const csrf = await csrfOf(page);
    for (const action of ['pause', 'resume']) {
      const r = await page.request.post(`${t.url}/console/schedules/${theirs.id}/${action}`, {
        headers: { 'x-csrf-token': csrf },
        // A tenant session cannot choose another tenant, whatever the form says.
        form: { tenant: other.id },
      });
      expect(r.status(), action).toBe(404);
    }
    expect((await scheduleOf(theirs.id, other.api_key)).paused).toBe(false);
    await page.goto(`${t.url}/console/schedules?tenant=${other.id}`);
    expect(await page.locator(`[data-schedule="${theirs.id}"]`).count()).toBe(0);
    expect(await page.locator(`[data-schedule="${mine.id}"]`).count()).toBe(1);

    // The admin chooses the tenant, and may pause its schedule.
    const admin = await signedIn(ADMIN_TOKEN);
    await admin.page.goto(`${t.url}/console/schedules`);
    await admin.page.getByLabel('Tenant', { exact: true }).selectOption(other.id);
    await admin.page.getByRole('button', { name: 'Show' }).click();
    await admin.page.waitForURL(/tenant=/);
    await admin.page.getByRole('button', { name: 'Pause theirs' }).click();
    await admin.page.waitForURL(/notice=schedule-paused/);
    expect(admin.page.url()).toContain(`tenant=${other.id}`);
    expect((await scheduleOf(theirs.id, other.api_key)).paused).toBe(true);
    await Promise.all([page.close(), admin.page.close()]);
  });

  it("edits a tenant's limits as the admin, and POST /v1/jobs then answers 429", async () => {
    const tenant = await t.newTenant();
    const { page, confirms } = await signedIn(ADMIN_TOKEN);
    await page.goto(`${t.url}/console/tenants/${tenant.id}`);
    await page.getByLabel('Pending jobs at most').fill('0');
    await page.getByLabel('Submissions per window').fill('100');
    await page.getByLabel('Window (seconds)').fill('60');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.waitForURL(/notice=limits-changed/);
    expect(confirms.at(-1)).toContain('Change the limits');
    expect(await limitsOf(tenant.id)).toMatchObject({
      max_running_jobs: null,
      max_pending_jobs: 0,
      submission_rate: { limit: 100, window_seconds: 60 },
    });
    expect(await page.getByLabel('Pending jobs at most').inputValue()).toBe('0');
    const refused = await t.api('/v1/jobs', {
      method: 'POST',
      key: tenant.api_key,
      json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 1 } },
    });
    expect(refused.status).toBe(429);

    // An emptied field lifts its limit; a bad value is refused and changes nothing.
    await page.getByLabel('Pending jobs at most').fill('');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.waitForURL(/notice=limits-changed/);
    expect((await limitsOf(tenant.id)).max_pending_jobs).toBeNull();
    const csrf = await csrfOf(page);
    for (const form of [
      { max_running_jobs: '0', max_pending_jobs: '', rate_limit: '100', rate_window_seconds: '60' },
      { max_running_jobs: 'lots', max_pending_jobs: '', rate_limit: '100', rate_window_seconds: '60' },
      { max_running_jobs: '', max_pending_jobs: '', rate_limit: '100', rate_window_seconds: '' },
    ]) {
      const r = await page.request.post(`${t.url}/console/tenants/${tenant.id}/limits`, {
        headers: { 'x-csrf-token': csrf },
        form,
      });
      expect(r.status(), JSON.stringify(form)).toBe(400);
    }
    expect(await limitsOf(tenant.id)).toMatchObject({
      max_running_jobs: null,
      max_pending_jobs: null,
      submission_rate: { limit: 100, window_seconds: 60 },
    });
    await page.close();
  });

  it("gives a tenant session 404 for the limits, its own or another's", async () => {
    const { page } = await signedIn(t.tenant.api_key);
    const csrf = await csrfOf(page);
    for (const id of [t.tenant.id, (await t.newTenant()).id]) {
      expect((await page.goto(`${t.url}/console/tenants/${id}`))?.status()).toBe(404);
      const r = await page.request.post(`${t.url}/console/tenants/${id}/limits`, {
        headers: { 'x-csrf-token': csrf },
        form: { max_running_jobs: '', max_pending_jobs: '0', rate_limit: '', rate_window_seconds: '' },
      });
      expect(r.status()).toBe(404);
      expect((await limitsOf(id)).max_pending_jobs).toBeNull();
    }
    await page.close();
  });

  it('fits the schedules page in the width of a desktop and of a phone', async () => {
    await createSchedule(`wide-${'x'.repeat(150)}`);
    for (const secret of [ADMIN_TOKEN, t.tenant.api_key]) {
      const { page } = await signedIn(secret);
      for (const width of [1280, 375]) {
        await page.setViewportSize({ width, height: 800 });
        for (const path of [
          '/console/schedules',
          ...(secret === ADMIN_TOKEN ? [`/console/tenants/${t.tenant.id}`] : []),
        ]) {
          expect((await page.goto(`${t.url}${path}`))?.status(), path).toBe(200);
          const fits = await page.evaluate('document.scrollingElement.scrollWidth <= window.innerWidth');
          expect(fits, `${path} at ${width} px`).toBe(true);
        }
      }
      await page.close();
    }
  });
});
