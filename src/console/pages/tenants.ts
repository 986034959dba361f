/** Tenants and keys (admin only): tenants, their named API keys, key revocation, webhook secret rotation. */
import { html } from 'hono/html';
import { ApiError } from '../../api/errors.ts';
import {
  createApiKey,
  createTenant,
  getTenant,
  listApiKeys,
  listTenants,
  NoSuchTenantError,
  revokeApiKey,
  TenantExistsError,
} from '../../tenants/repository.ts';
import { rotateSecret } from '../../webhooks/keys.ts';
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
