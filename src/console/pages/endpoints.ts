/**
 * Webhook endpoints: breaker state, the last hour's success rate and latency, pending and dead
 * deliveries; an endpoint a 410 disabled is enabled again from here (as POST /v1/webhook-endpoints/{id}/enable).
 */
import { html } from 'hono/html';
import { ApiError } from '../../api/errors.ts';
import { enableEndpoint } from '../../webhooks/breaker.ts';
import { listTenantEndpoints } from '../../webhooks/endpoints.ts';
import { endpointLatency } from '../../webhooks/store.ts';
import { listTenants } from '../../tenants/repository.ts';
import type { ConsoleApp, ConsoleDeps } from '../context.ts';
import { done, formOf, isUuid, pathId, tenantScope } from '../context.ts';
import { actionForm, hidden, page, tenantPicker, when } from '../layout.ts';
import { scopeOf } from '../session.ts';

export function registerEndpointPages(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool } = deps;
  app.get('/console/endpoints', async (c) => {
    const session = c.get('session');
    const tenants = session.kind === 'admin' ? await listTenants(pool) : [];
    // Endpoints are listed per tenant, as in the API: the admin's chosen tenant, the first by default.
    const tenantId = scopeOf(session) ?? tenantScope(c) ?? tenants[0]?.id;
    const endpoints = tenantId === undefined ? [] : await listTenantEndpoints(pool, tenantId);
    const latency = tenantId === undefined ? undefined : await endpointLatency(pool, tenantId);
    const body = html`${session.kind === 'admin' ? tenantPicker('/console/endpoints', tenants, tenantId) : ''}
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Endpoint</th>
              <th scope="col">Breaker</th>
              <th scope="col">Enabled</th>
              <th scope="col">Success, last hour</th>
              <th scope="col">Mean latency</th>
              <th scope="col">Pending</th>
              <th scope="col">Dead</th>
              <th scope="col">Last success</th>
              <th scope="col">Last failure</th>
            </tr>
          </thead>
          <tbody>
            ${endpoints.map((e) => {
              const l = latency?.get(e.endpoint);
              return html`<tr>
                <td>${e.endpoint}</td>
                <td>
                  <span class="breaker b-${e.state}">${e.state}</span
                  >${e.retry_at === null ? '' : html` until ${when(e.retry_at)}`}
                </td>
                <td>
                  ${
                    e.disabled_at === null
                      ? 'yes'
                      : html`<span class="breaker b-disabled">disabled by a 410</span> ${when(e.disabled_at)}
                          ${actionForm(
                            session,
                            `/console/endpoints/${e.id}/enable`,
                            `Enable ${e.endpoint}`,
                            `Enable ${e.endpoint}? Its ${e.pending} waiting deliveries are sent at once.`,
                            session.kind === 'admin' && tenantId !== undefined ? [hidden('tenant', tenantId)] : [],
                          )}`
                  }
                </td>
                <td>
                  ${l === undefined || l.attempts === 0 ? '–' : `${Math.round((l.succeeded / l.attempts) * 100)} % of ${l.attempts}`}
                </td>
                <td>${l === undefined ? '–' : `${l.meanMs} ms`}</td>
                <td>${e.pending}</td>
                <td>${e.dead}</td>
                <td>${when(e.last_success_at)}</td>
                <td>${when(e.last_failure_at)}</td>
              </tr>`;
            })}
          </tbody>
        </table>
      </div>
      ${endpoints.length === 0 ? html`<p>No deliveries yet.</p>` : ''}`;
    return c.html(
      await page('Webhook endpoints', session, '/console/endpoints', body, { notice: c.req.query('notice') }),
    );
  });

  app.post('/console/endpoints/:id/enable', async (c) => {
    const id = pathId(c, 'id', 'webhook endpoint');
    const own = scopeOf(c.get('session'));
    const chosen = (await formOf(c)).one('tenant');
    const tenantId = own ?? (isUuid(chosen) ? chosen.toLowerCase() : undefined);
    if (tenantId === undefined) throw new ApiError('bad-request', 'choose a tenant first');
    const e = await enableEndpoint(pool, tenantId, id);
    if (e === undefined) throw new ApiError('not-found', `no webhook endpoint with id ${id}`);
    c.get('log').info({ tenant_id: tenantId, endpoint_id: id }, 'console: webhook endpoint enabled');
    return done(c, `/console/endpoints${own === undefined ? `?tenant=${tenantId}` : ''}`, 'endpoint-enabled');
  });
}
