/** Tenants and keys (admin only): tenants, their named API keys, key revocation, webhook secret rotation. */
import { html } from 'hono/html';
import { ApiError } from '../../api/errors.ts';
import { TenantLimitsPatchSchema } from '../../api/schemas.ts';
import { getLimits, setLimits, type LimitsPatch } from '../../tenants/limits.ts';
import {
  createApiKey,
  createTenant,
  getTenant,
  listApiKeys,
  listTenants,
  NoSuchTenantError,
  rotateSecret,
  revokeApiKey,
  TenantExistsError,
} from '../../tenants/repository.ts';
import type { ConsoleApp, ConsoleContext, ConsoleDeps } from '../context.ts';
import { done, formOf, pathId } from '../context.ts';
import { actionForm, hidden, page, when, type Html } from '../layout.ts';

function adminOnly(c: ConsoleContext): void {
  // Tenant sessions are told the page does not exist, as the API does for a disabled admin API.
  if (c.get('session').kind !== 'admin') throw new ApiError('not-found', 'there is no such console page');
}

const nameOf = (v: string | undefined, what: string): string => {
  const name = (v ?? '').trim();
  if (name.length < 1 || name.length > 200) throw new ApiError('bad-request', `${what} must be 1 to 200 characters`);
  return name;
};

/** A whole number from a form field; an empty field is null (no limit). */
function countOf(v: string | undefined, label: string): number | null {
  const text = (v ?? '').trim();
  if (text === '') return null;
  if (!/^\d{1,10}$/.test(text)) throw new ApiError('bad-request', `${label} must be a whole number, or empty for none`);
  return Number(text);
}

/** The limits form, read whole (every field is shown, so an empty one lifts its limit) and checked as the admin API checks it. */
async function limitsOf(c: ConsoleContext): Promise<LimitsPatch> {
  const form = await formOf(c);
  const rate = countOf(form.one('rate_limit'), 'Submissions per window');
  const window = countOf(form.one('rate_window_seconds'), 'Window (seconds)');
  if ((rate === null) !== (window === null))
    throw new ApiError('bad-request', 'a submission rate needs both the submissions per window and the window');
  const parsed = TenantLimitsPatchSchema.safeParse({
    max_running_jobs: countOf(form.one('max_running_jobs'), 'Running jobs at once'),
    max_pending_jobs: countOf(form.one('max_pending_jobs'), 'Pending jobs at most'),
    submission_rate: rate === null || window === null ? null : { limit: rate, window_seconds: window },
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ApiError('bad-request', `${issue?.path.join('.') ?? 'limits'}: ${issue?.message ?? 'not valid'}`);
  }
  return parsed.data;
}

export function registerTenantPages(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool, config } = deps;

  async function tenantsPage(c: ConsoleContext, secret?: { label: string; value: string }, problem?: string) {
    const tenants = await listTenants(pool);
    const session = c.get('session');
    const body = html`${problem === undefined ? '' : html`<p class="error" role="alert">${problem}</p>`}
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            ${tenants.map(
              (t) =>
                html`<tr>
                  <td><a href="/console/tenants/${t.id}">${t.name}</a></td>
                  <td><code>${t.id}</code></td>
                  <td>${when(t.created_at)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      <form method="post" action="/console/tenants" class="inline">
        ${hidden('csrf', session.csrf)}
        <label for="t-name">New tenant name</label><input id="t-name" name="name" required maxlength="200" />
        <button type="submit">Create tenant</button>
      </form>`;
    return c.html(await page('Tenants', session, '/console/tenants', body, { notice: c.req.query('notice'), secret }));
  }

  async function tenantPage(c: ConsoleContext, id: string, secret?: { label: string; value: string }) {
    const tenant = await getTenant(pool, id);
    if (tenant === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    const session = c.get('session');
    const keys = (await listApiKeys(pool, id)) ?? [];
    const limits = await getLimits(pool, id);
    const field = (name: string, label: string, value: number | null | undefined, hint: string, min: number) =>
      html`<label for="l-${name}">${label}</label
        ><input
          id="l-${name}"
          name="${name}"
          type="number"
          inputmode="numeric"
          min="${min}"
          step="1"
          value="${value ?? ''}"
          placeholder="${hint}"
        />`;
    const body = html`<p>Tenant <code>${tenant.id}</code>, created ${when(tenant.created_at)}.</p>
      <section aria-labelledby="h-keys">
        <h2 id="h-keys">API keys</h2>
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Starts with</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              ${keys.map(
                (k): Html =>
                  html`<tr>
                    <td>${k.name}</td>
                    <td><code>${k.prefix}…</code></td>
                    <td>${when(k.created_at)}</td>
                    <td>${when(k.last_used_at)}</td>
                    <td>
                      ${k.revoked_at === null ? actionForm(session, `/console/tenants/${id}/keys/${k.id}/revoke`, `Revoke ${k.name}`, `Revoke the key "${k.name}"? Clients using it get 401 within ${config.authCacheSeconds} s.`) : html`revoked ${when(k.revoked_at)}`}
                    </td>
                  </tr>`,
              )}
            </tbody>
          </table>
        </div>
        <form method="post" action="/console/tenants/${id}/keys" class="inline">
          ${hidden('csrf', session.csrf)}
          <label for="k-name">New key name</label><input id="k-name" name="name" required maxlength="200" />
          <button type="submit">Create key</button>
        </form>
      </section>
      <section aria-labelledby="h-limits">
        <h2 id="h-limits">Limits</h2>
        <p>
          Past the pending or rate limit, <code>POST /v1/jobs</code> answers 429. An empty field lifts its limit. Last
          changed ${when(limits?.updated_at)}.
        </p>
        <form
          method="post"
          action="/console/tenants/${id}/limits"
          class="inline"
          data-confirm="Change the limits of ${tenant.name}?"
        >
          ${hidden('csrf', session.csrf)}
          ${field('max_running_jobs', 'Running jobs at once', limits?.max_running_jobs, config.worker.tenantConcurrency === undefined ? 'a fair share' : `default ${config.worker.tenantConcurrency}`, 1)}
          ${field('max_pending_jobs', 'Pending jobs at most', limits?.max_pending_jobs, 'no limit', 0)}
          ${field('rate_limit', 'Submissions per window', limits?.submission_rate?.limit, 'no limit', 1)}
          ${field('rate_window_seconds', 'Window (seconds)', limits?.submission_rate?.window_seconds, 'no limit', 1)}
          <button type="submit">Save limits</button>
        </form>
      </section>
      <section aria-labelledby="h-secret">
        <h2 id="h-secret">Webhook secret</h2>
        ${actionForm(session, `/console/tenants/${id}/webhook-secret`, 'Rotate webhook secret', `Rotate the webhook secret? The current one keeps signing for ${config.webhooks.secretGraceSeconds} s.`)}
      </section>`;
    return c.html(
      await page(`Tenant ${tenant.name}`, session, '/console/tenants', body, { notice: c.req.query('notice'), secret }),
    );
  }

  app.get('/console/tenants', async (c) => {
    adminOnly(c);
    return tenantsPage(c);
  });

  app.post('/console/tenants', async (c) => {
    adminOnly(c);
    const name = nameOf((await formOf(c)).one('name'), 'The name');
    try {
      const t = await createTenant(pool, name);
      c.get('log').info({ tenant_id: t.id }, 'console: tenant created');
      // Shown in this response only: a secret never goes into a redirect URL.
      return tenantsPage(c, {
        label: `API key and webhook secret of ${t.name}`,
        value: `${t.api_key}\n${t.webhook_secret}`,
      });
    } catch (err) {
      if (err instanceof TenantExistsError) return tenantsPage(c, undefined, err.message);
      throw err;
    }
  });

  app.get('/console/tenants/:id', async (c) => {
    adminOnly(c);
    return tenantPage(c, pathId(c, 'id', 'tenant'));
  });

  app.post('/console/tenants/:id/keys', async (c) => {
    adminOnly(c);
    const id = pathId(c, 'id', 'tenant');
    const name = nameOf((await formOf(c)).one('name'), 'The key name');
    const created = await createApiKey(pool, id, name);
    if (created === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    c.get('log').info({ tenant_id: id, key_id: created.key.id }, 'console: API key created');
    return tenantPage(c, id, { label: `API key ${created.key.name}`, value: created.apiKey });
  });

  app.post('/console/tenants/:id/keys/:key/revoke', async (c) => {
    adminOnly(c);
    const id = pathId(c, 'id', 'tenant');
    const key = pathId(c, 'key', 'key');
    if ((await revokeApiKey(pool, id, key)) === undefined) throw new ApiError('not-found', `no key with id ${key}`);
    c.get('log').info({ tenant_id: id, key_id: key }, 'console: API key revoked');
    return done(c, `/console/tenants/${id}`, 'key-revoked');
  });

  app.post('/console/tenants/:id/limits', async (c) => {
    adminOnly(c);
    const id = pathId(c, 'id', 'tenant');
    const form = await limitsOf(c);
    const current = await getLimits(pool, id);
    if (current === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    // Only what changed is written: saving an unchanged rate must not refill its bucket.
    const patch = Object.fromEntries(
      Object.entries(form).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(current[k as keyof LimitsPatch])),
    ) as LimitsPatch;
    if (Object.keys(patch).length === 0) return done(c, `/console/tenants/${id}`, 'limits-unchanged');
    if ((await setLimits(pool, id, patch)) === undefined) throw new ApiError('not-found', `no tenant with id ${id}`);
    await deps.limitedTenants?.refresh();
    c.get('log').info({ tenant_id: id, limits: patch }, 'console: tenant limits changed');
    return done(c, `/console/tenants/${id}`, 'limits-changed');
  });

  app.post('/console/tenants/:id/webhook-secret', async (c) => {
    adminOnly(c);
    const id = pathId(c, 'id', 'tenant');
    try {
      const s = await rotateSecret(pool, id, config.webhooks.secretGraceSeconds);
      c.get('log').info({ tenant_id: id, secret_id: s.id }, 'console: webhook secret rotated');
      return tenantPage(c, id, { label: 'New webhook secret', value: s.secret });
    } catch (err) {
      if (err instanceof NoSuchTenantError) throw new ApiError('not-found', err.message);
      throw err;
    }
  });
}
