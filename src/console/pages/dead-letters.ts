/** Dead letters: dead jobs and dead deliveries, filtered; replay or redeliver the selected ones at once. */
import { html } from 'hono/html';
import { ApiError } from '../../api/errors.ts';
import { listTenants, type Tenant } from '../../tenants/repository.ts';
import { listDeliveries, redeliver } from '../../webhooks/store.ts';
import { listDeadLetters } from '../../jobs/repository.ts';
import { replayMany, replaySelected } from '../../worker/dead-letters.ts';
import type { ConsoleApp, ConsoleContext, ConsoleDeps } from '../context.ts';
import { dateFilter, done, formOf, isUuid, tenantScope } from '../context.ts';
import { hidden, page, when, type Html } from '../layout.ts';
import { scopeOf } from '../session.ts';

const PAGE_SIZE = 100;

/**
 * The one tenant these lists are read for: the session's, or the admin's chosen one (the first tenant
 * until another is chosen: dead letters are listed and replayed per tenant, as in the API).
 */
async function deadLetterTenant(c: ConsoleContext, tenants: Tenant[]): Promise<string | undefined> {
  return scopeOf(c.get('session')) ?? tenantScope(c) ?? tenants[0]?.id;
}

export function registerDeadLetterPages(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool, boss, registry } = deps;

  app.get('/console/dead-letters', async (c) => {
    const session = c.get('session');
    const q = c.req.query();
    const tenants = session.kind === 'admin' ? await listTenants(pool) : [];
    const tenantId = await deadLetterTenant(c, tenants);
    const type = q.type === undefined || q.type === '' ? undefined : q.type;
    const since = dateFilter(q.since, 'Dead since');
    const until = dateFilter(q.until, 'Dead before');
    const [jobs, deliveries] =
      tenantId === undefined
        ? [{ rows: [] }, { rows: [] }]
        : await Promise.all([
            listDeadLetters(pool, tenantId, { type, since, until, limit: PAGE_SIZE }),
            listDeliveries(pool, tenantId, { status: 'DEAD', since, until, limit: PAGE_SIZE }),
          ]);
    const csrf = session.csrf;
    const tenantField: Html = session.kind === 'admin' && tenantId !== undefined ? hidden('tenant', tenantId) : html``;
    // The filter shown, whole, so "replay all matching the filter" replays what the lists show.
    const filter: Array<[string, string | undefined]> = [
      ['type', type],
      ['since', q.since],
      ['until', q.until],
    ];
    const filterFields = filter.flatMap(([name, value]) =>
      value === undefined || value === '' ? [] : [hidden(name, value)],
    );
    const body = html`<form
        method="get"
        action="/console/dead-letters"
        class="filters"
        aria-label="Filter dead letters"
      >
        ${
          session.kind === 'admin'
            ? html`<label for="f-tenant">Tenant</label
                ><select id="f-tenant" name="tenant">
                  ${tenants.map(
                    (t) => html`<option value="${t.id}" ${t.id === tenantId ? html` selected` : ''}>${t.name}</option>`,
                  )}
                </select>`
            : ''
        }
        <label for="f-type">Job type</label
        ><select id="f-type" name="type">
          <option value="">any</option>
          ${registry.names().map((t) => html`<option value="${t}" ${t === type ? html` selected` : ''}>${t}</option>`)}
        </select>
        <label for="f-since">Dead since (UTC)</label
        ><input id="f-since" name="since" type="datetime-local" value="${q.since ?? ''}" />
        <label for="f-until">Dead before (UTC)</label
        ><input id="f-until" name="until" type="datetime-local" value="${q.until ?? ''}" />
        <button type="submit">Apply</button>
      </form>
      <section aria-labelledby="h-jobs">
        <h2 id="h-jobs">Dead jobs</h2>
        <form method="post" action="/console/dead-letters/replay" data-confirm="Replay the selected jobs?">
          ${hidden('csrf', csrf)}${tenantField}
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col"><span class="sr">Select</span></th>
                  <th scope="col">Job</th>
                  <th scope="col">Type</th>
                  <th scope="col">Dead since</th>
                  <th scope="col">Last error</th>
                </tr>
              </thead>
              <tbody>
                ${jobs.rows.map(
                  (d) =>
                    html`<tr>
                      <td>
                        <input
                          type="checkbox"
                          name="job"
                          value="${d.job.id}"
                          id="dj-${d.job.id}"
                          aria-label="Select job ${d.job.id}"
                        />
                      </td>
                      <td>
                        <a href="/console/jobs/${d.job.id}"><code>${d.job.id.slice(0, 8)}</code></a>
                      </td>
                      <td>${d.job.type}</td>
                      <td>${when(d.deadLetteredAt)}</td>
                      <td><pre class="excerpt">${JSON.stringify(d.job.error)}</pre></td>
                    </tr>`,
                )}
              </tbody>
            </table>
          </div>
          ${jobs.rows.length === 0 ? html`<p>No dead jobs.</p>` : ''}
          <fieldset>
            <legend>Replay from</legend>
            <label><input type="radio" name="from" value="checkpoint" checked /> last checkpoint</label>
            <label><input type="radio" name="from" value="start" /> the start</label>
          </fieldset>
          <button type="submit">Replay selected</button>
        </form>
        <form
          method="post"
          action="/console/dead-letters/replay-all"
          data-confirm="Replay every dead job matching the filter (up to 1,000)?"
        >
          ${hidden('csrf', csrf)}${tenantField}${filterFields}
          <button type="submit">Replay all matching the filter</button>
        </form>
      </section>
      <section aria-labelledby="deliveries">
        <h2 id="deliveries">Dead deliveries</h2>
        <form method="post" action="/console/dead-letters/redeliver" data-confirm="Redeliver the selected webhooks?">
          ${hidden('csrf', csrf)}${tenantField}
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col"><span class="sr">Select</span></th>
                  <th scope="col">Event</th>
                  <th scope="col">Job</th>
                  <th scope="col">URL</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Last error</th>
                </tr>
              </thead>
              <tbody>
                ${deliveries.rows.map(
                  (d) =>
                    html`<tr>
                      <td>
                        <input type="checkbox" name="delivery" value="${d.id}" aria-label="Select delivery ${d.id}" />
                      </td>
                      <td>${d.event_type}</td>
                      <td>
                        <a href="/console/jobs/${d.job_id}"><code>${d.job_id.slice(0, 8)}</code></a>
                      </td>
                      <td>${d.url}</td>
                      <td>${d.attempts}</td>
                      <td>${d.last_status_code ?? ''} ${d.last_error ?? ''}</td>
                    </tr>`,
                )}
              </tbody>
            </table>
          </div>
          ${deliveries.rows.length === 0 ? html`<p>No dead deliveries.</p>` : ''}
          <button type="submit">Redeliver selected</button>
        </form>
      </section>`;
    return c.html(await page('Dead letters', session, '/console/dead-letters', body, { notice: q.notice }));
  });

  /** The tenant a bulk action acts for (the session's, or the admin's chosen one) and the checked ids. */
  async function bulk(c: ConsoleContext, field: string) {
    const form = await formOf(c);
    const own = scopeOf(c.get('session'));
    const chosen = form.one('tenant');
    const tenantId = own ?? (isUuid(chosen) ? chosen : undefined);
    if (tenantId === undefined) throw new ApiError('bad-request', 'choose a tenant first');
    const ids = form.all(field).filter(isUuid);
    const back = `/console/dead-letters${own === undefined ? `?tenant=${tenantId}` : ''}`;
    return { form, tenantId, ids, back };
  }

  app.post('/console/dead-letters/replay', async (c) => {
    const { form, tenantId, ids, back } = await bulk(c, 'job');
    if (ids.length === 0) return done(c, back, 'nothing-selected');
    const from = form.one('from') === 'start' ? 'start' : 'checkpoint';
    const replayed = await replaySelected(pool, boss, registry, tenantId, ids, from);
    c.get('log').info({ tenant_id: tenantId, count: replayed.length, from }, 'console: dead letters replayed');
    return done(c, back, 'replayed');
  });

  app.post('/console/dead-letters/replay-all', async (c) => {
    const { form, tenantId, back } = await bulk(c, 'job');
    const type = form.one('type');
    const ids = await replayMany(pool, boss, registry, tenantId, {
      type: type === '' ? undefined : type,
      since: dateFilter(form.one('since'), 'Dead since'),
      until: dateFilter(form.one('until'), 'Dead before'),
      limit: 1000,
      from: 'checkpoint',
    });
    c.get('log').info({ tenant_id: tenantId, count: ids.length }, 'console: dead letters replayed by filter');
    return done(c, back, 'replayed');
  });

  app.post('/console/dead-letters/redeliver', async (c) => {
    const { tenantId, ids, back } = await bulk(c, 'delivery');
    if (ids.length === 0) return done(c, back, 'nothing-selected');
    const sent = await redeliver(pool, tenantId, { ids });
    c.get('log').info({ tenant_id: tenantId, count: sent.length }, 'console: deliveries redelivered');
    return done(c, back, 'redelivered-many');
  });
}
