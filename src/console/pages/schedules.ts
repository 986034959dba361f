/**
 * Schedules: a tenant's recurring schedules with their next and last occurrence; pause and resume
 * (as POST /v1/schedules/{id}/pause and …/resume). Listed per tenant, as in the API: an admin chooses
 * the tenant (the first one until another is chosen).
 */
import { html } from 'hono/html';
import { decodeCursor, encodeCursor } from '../../api/cursor.ts';
import { ApiError } from '../../api/errors.ts';
import { setSchedulePaused } from '../../schedules/pause.ts';
import { listSchedules } from '../../schedules/store.ts';
import { listTenants } from '../../tenants/repository.ts';
import type { ConsoleApp, ConsoleContext, ConsoleDeps } from '../context.ts';
import { done, formOf, isUuid, pathId, tenantScope } from '../context.ts';
import { actionForm, hidden, page, tenantPicker, when } from '../layout.ts';
import { scopeOf } from '../session.ts';

const PAGE_SIZE = 50;

export function registerSchedulePages(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool } = deps;

  app.get('/console/schedules', async (c) => {
    const session = c.get('session');
    const tenants = session.kind === 'admin' ? await listTenants(pool) : [];
    const tenantId = scopeOf(session) ?? tenantScope(c) ?? tenants[0]?.id;
    const cursor = c.req.query('cursor');
    const result =
      tenantId === undefined
        ? { rows: [], next: null }
        : await listSchedules(pool, tenantId, {
            limit: PAGE_SIZE,
            after: cursor === undefined || cursor === '' ? undefined : decodeCursor(cursor),
          });
    const tenantField = session.kind === 'admin' && tenantId !== undefined ? [hidden('tenant', tenantId)] : [];
    const next = new URLSearchParams(session.kind === 'admin' && tenantId !== undefined ? { tenant: tenantId } : {});
    if (result.next !== null) next.set('cursor', encodeCursor(result.next));
    const body = html`${session.kind === 'admin' ? tenantPicker('/console/schedules', tenants, tenantId) : ''}
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Cron</th>
              <th scope="col">Time zone</th>
              <th scope="col">Job type</th>
              <th scope="col">Overlap</th>
              <th scope="col">Next firing</th>
              <th scope="col">Last firing</th>
              <th scope="col">Last job</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            ${result.rows.map(
              (s) =>
                html`<tr data-schedule="${s.id}">
                  <td>${s.name}</td>
                  <td><code>${s.cron}</code></td>
                  <td>${s.timezone}</td>
                  <td>${s.job.type}</td>
                  <td>${s.overlap}</td>
                  <td data-next="${s.id}">${when(s.next_fire_at)}</td>
                  <td>${when(s.last_fire_at)}${s.last_outcome === null ? '' : ` (${s.last_outcome})`}</td>
                  <td>
                    ${s.last_job_id === null ? '–' : html`<a href="/console/jobs/${s.last_job_id}">${s.last_job_id}</a>`}
                  </td>
                  <td>
                    ${
                      s.paused_at === null
                        ? html`active
                          ${actionForm(session, `/console/schedules/${s.id}/pause`, `Pause ${s.name}`, `Pause the schedule "${s.name}"? It creates no job until it is resumed.`, tenantField)}`
                        : html`paused ${when(s.paused_at)}
                          ${actionForm(session, `/console/schedules/${s.id}/resume`, `Resume ${s.name}`, `Resume the schedule "${s.name}"? It fires next at its first occurrence from now; the ones missed while paused do not fire.`, tenantField)}`
                    }
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${result.rows.length === 0 ? html`<p>No schedules.</p>` : ''}
      ${result.next === null ? '' : html`<p><a rel="next" href="/console/schedules?${next.toString()}">Older schedules</a></p>`}`;
    return c.html(await page('Schedules', session, '/console/schedules', body, { notice: c.req.query('notice') }));
  });

  const setPaused = (paused: boolean) => async (c: ConsoleContext) => {
    const id = pathId(c, 'id', 'schedule');
    const own = scopeOf(c.get('session'));
    const chosen = (await formOf(c)).one('tenant');
    const tenantId = own ?? (isUuid(chosen) ? chosen.toLowerCase() : undefined);
    if (tenantId === undefined) throw new ApiError('bad-request', 'choose a tenant first');
    const row = await setSchedulePaused(pool, tenantId, id, paused);
    if (row === undefined) throw new ApiError('not-found', `no schedule with id ${id}`);
    c.get('log').info(
      { tenant_id: tenantId, schedule_id: id },
      paused ? 'console: schedule paused' : 'console: schedule resumed',
    );
    return done(
      c,
      `/console/schedules${own === undefined ? `?tenant=${tenantId}` : ''}`,
      paused ? 'schedule-paused' : 'schedule-resumed',
    );
  };
  app.post('/console/schedules/:id/pause', setPaused(true));
  app.post('/console/schedules/:id/resume', setPaused(false));
}
