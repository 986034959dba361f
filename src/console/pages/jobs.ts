/** Jobs: the filtered, paginated list with live bars; a job's page; cancel, retry and redeliver. */
import { html } from 'hono/html';
import { ApiError } from '../../api/errors.ts';
import { decodeCursor, encodeCursor } from '../../api/cursor.ts';
import { withTransaction } from '../../db/pool.ts';
import type { JobRow } from '../../jobs/model.ts';
import { cancelJob } from '../../jobs/lifecycle.ts';
import { checkpointOf, getJob, listJobs, tenantOfJob } from '../../jobs/repository.ts';
import { isTerminal, JOB_STATUSES, type JobStatus } from '../../jobs/state.ts';
import { recentEvents } from '../../realtime/events.ts';
import { listArtifacts, signedLink } from '../../storage/artifacts.ts';
import { listTenants } from '../../tenants/repository.ts';
import { attemptsOf, deliveriesOfJob, redeliver } from '../../webhooks/store.ts';
import { replayJob } from '../../worker/dead-letters.ts';
import type { ConsoleApp, ConsoleContext, ConsoleDeps } from '../context.ts';
import { dateFilter, done, formOf, isUuid, pathId, tenantScope } from '../context.ts';
import { actionForm, hidden, json, page, progressBar, when, type Html } from '../layout.ts';
import { scopeOf } from '../session.ts';

const PAGE_SIZE = 50;
/** Newest events shown on a job's page. */
const TIMELINE = 100;

export function statusBadge(jobId: string, status: JobStatus): Html {
  return html`<span class="status s-${status}" data-status="${jobId}">${status}</span>`;
}

const live = (j: JobRow) => !isTerminal(j.status);

/** The job a console session may see: its own tenant's, or for the admin any tenant's. 404 otherwise. */
async function visibleJob(
  c: ConsoleContext,
  deps: ConsoleDeps,
  id: string,
): Promise<{ tenantId: string; job: JobRow }> {
  const tenantId = scopeOf(c.get('session')) ?? (await tenantOfJob(deps.pool, id));
  const job = tenantId === undefined ? undefined : await getJob(deps.pool, tenantId, id);
  if (tenantId === undefined || job === undefined) throw new ApiError('not-found', `no job with id ${id}`);
  return { tenantId, job };
}

function selectOf(
  name: string,
  label: string,
  options: Array<{ value: string; label: string }>,
  chosen: string | undefined,
): Html {
  return html`<label for="f-${name}">${label}</label>
    <select id="f-${name}" name="${name}">
      <option value="">any</option>
      ${options.map(
        (o) => html`<option value="${o.value}" ${o.value === chosen ? html` selected` : ''}>${o.label}</option>`,
      )}
    </select>`;
}

function rate(job: JobRow): { perSecond: number | null; etaSeconds: number | null } {
  if (job.started_at === null || job.processed <= 0) return { perSecond: null, etaSeconds: null };
  const end = job.finished_at ?? new Date();
  const secs = Math.max(0.001, (end.getTime() - job.started_at.getTime()) / 1000);
  const perSecond = job.processed / secs;
  const etaSeconds =
    job.total === null || isTerminal(job.status) ? null : Math.max(0, (job.total - job.processed) / perSecond);
  return { perSecond, etaSeconds };
}

export function registerJobPages(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool, boss, registry, config, signer } = deps;

  app.get('/console/jobs', async (c) => {
    const session = c.get('session');
    const q = c.req.query();
    const wanted = q.id?.trim();
    if (wanted !== undefined && wanted !== '') {
      if (!isUuid(wanted)) throw new ApiError('bad-request', 'a job id is a UUID');
      return c.redirect(`/console/jobs/${wanted.toLowerCase()}`, 303);
    }
    const status = q.status === undefined || q.status === '' ? undefined : q.status;
    if (status !== undefined && !(JOB_STATUSES as readonly string[]).includes(status))
      throw new ApiError('bad-request', `status must be one of ${JOB_STATUSES.join(', ')}`);
    const type = q.type === undefined || q.type === '' ? undefined : q.type;
    const tenantId = tenantScope(c);
    const createdFrom = dateFilter(q.from, 'Created from');
    const createdTo = dateFilter(q.to, 'Created before');
    const result = await listJobs(pool, tenantId, {
      status: status as JobStatus | undefined,
      type,
      createdFrom,
      createdTo,
      limit: PAGE_SIZE,
      after: q.cursor === undefined || q.cursor === '' ? undefined : decodeCursor(q.cursor),
    });
    const tenants = session.kind === 'admin' ? await listTenants(pool) : [];
    const tenantName = new Map(tenants.map((t) => [t.id, t.name]));
    const next = new URLSearchParams(
      Object.entries(q).filter(([k, v]) => k !== 'cursor' && k !== 'notice' && v !== ''),
    );
    if (result.next !== null) next.set('cursor', encodeCursor(result.next));
    const body = html`<form method="get" action="/console/jobs" class="filters" aria-label="Filter jobs">
        ${selectOf(
          'status',
          'Status',
          JOB_STATUSES.map((s) => ({ value: s, label: s })),
          status,
        )}
        ${selectOf(
          'type',
          'Type',
          registry.names().map((t) => ({ value: t, label: t })),
          type,
        )}
        ${
          session.kind === 'admin'
            ? selectOf(
                'tenant',
                'Tenant',
                tenants.map((t) => ({ value: t.id, label: t.name })),
                tenantId,
              )
            : ''
        }
        <label for="f-from">Created from (UTC)</label
        ><input id="f-from" name="from" type="datetime-local" value="${q.from ?? ''}" />
        <label for="f-to">Created before (UTC)</label
        ><input id="f-to" name="to" type="datetime-local" value="${q.to ?? ''}" /> <label for="f-id">Job id</label
        ><input id="f-id" name="id" type="search" placeholder="go to a job by id" />
        <button type="submit">Apply</button>
      </form>
      <div class="scroll">
        <table class="jobs">
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Type</th>
              ${session.kind === 'admin' ? html`<th scope="col">Tenant</th>` : ''}
              <th scope="col">Status</th>
              <th scope="col">Progress</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            ${result.rows.map(
              (j) =>
                html`<tr>
                  <td>
                    <a href="/console/jobs/${j.id}"><code>${j.id.slice(0, 8)}</code></a>
                  </td>
                  <td>${j.type}</td>
                  ${session.kind === 'admin' ? html`<td>${tenantName.get(j.tenant_id) ?? j.tenant_id}</td>` : ''}
                  <td>${statusBadge(j.id, j.status)}</td>
                  <td>${progressBar(j.id, j.percent, live(j), `Progress of job ${j.id}`)}</td>
                  <td>${when(j.created_at)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${result.rows.length === 0 ? html`<p>No jobs match.</p>` : ''}
      ${result.next === null ? '' : html`<p><a rel="next" href="/console/jobs?${next.toString()}">Older jobs</a></p>`}`;
    return c.html(await page('Jobs', session, '/console/jobs', body, { notice: q.notice }));
  });

  app.get('/console/jobs/:id', async (c) => {
    const session = c.get('session');
    const id = pathId(c, 'id', 'job');
    const { tenantId, job } = await visibleJob(c, deps, id);
    const [checkpoint, events, artifacts, deliveries] = await Promise.all([
      checkpointOf(pool, tenantId, id),
      recentEvents(pool, id, TIMELINE),
      listArtifacts(pool, tenantId, id),
      deliveriesOfJob(pool, tenantId, id).then((rows) => rows ?? []),
    ]);
    const attempts = await attemptsOf(
      pool,
      deliveries.map((d) => d.id),
    );
    const links = await Promise.all(artifacts.map((a) => signedLink(signer, config.publicUrl, a, 15 * 60)));
    const r = rate(job);
    const actions: Html[] = [];
    if (!isTerminal(job.status))
      actions.push(actionForm(session, `/console/jobs/${id}/cancel`, 'Cancel job', 'Cancel this job?'));
    if (job.status === 'FAILED') {
      actions.push(
        actionForm(
          session,
          `/console/jobs/${id}/retry`,
          'Retry from checkpoint',
          'Retry this job from its last checkpoint?',
          [hidden('from', 'checkpoint')],
        ),
        actionForm(
          session,
          `/console/jobs/${id}/retry`,
          'Retry from start',
          'Retry this job from the start, discarding its checkpoint?',
          [hidden('from', 'start')],
        ),
      );
    }
    const body = html`<section aria-labelledby="h-state" class="job">
        <h2 id="h-state">State</h2>
        <dl class="facts">
          <div>
            <dt>Id</dt>
            <dd><code>${job.id}</code></dd>
          </div>
          <div>
            <dt>Type</dt>
            <dd>${job.type}</dd>
          </div>
          <div>
            <dt>Status</dt>
            <dd>${statusBadge(job.id, job.status)}</dd>
          </div>
          <div>
            <dt>Progress</dt>
            <dd>
              ${progressBar(job.id, job.percent, live(job), 'Job progress')}
              <span data-count="${job.id}"
                >${job.processed.toLocaleString('en')}${job.total === null ? '' : ` of ${job.total.toLocaleString('en')}`}</span
              >
            </dd>
          </div>
          <div>
            <dt>Rate</dt>
            <dd data-rate="${job.id}">${r.perSecond === null ? '–' : `${r.perSecond.toFixed(1)} / s`}</dd>
          </div>
          <div>
            <dt>ETA</dt>
            <dd data-eta="${job.id}">${r.etaSeconds === null ? '–' : `${Math.round(r.etaSeconds)} s`}</dd>
          </div>
          <div>
            <dt>Attempts</dt>
            <dd>${job.attempts} of ${job.max_attempts}</dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>${when(job.created_at)}</dd>
          </div>
          <div>
            <dt>Scheduled for</dt>
            <dd>${when(job.scheduled_for)}</dd>
          </div>
          <div>
            <dt>Priority</dt>
            <dd>${job.priority}</dd>
          </div>
          <div>
            <dt>Timeout</dt>
            <dd>${job.timeout_seconds === null ? '–' : `${job.timeout_seconds} s`}</dd>
          </div>
          <div>
            <dt>Expires</dt>
            <dd>${when(job.expires_at)}</dd>
          </div>
          <div>
            <dt>Started</dt>
            <dd>${when(job.started_at)}</dd>
          </div>
          <div>
            <dt>Finished</dt>
            <dd>${when(job.finished_at)}</dd>
          </div>
          <div>
            <dt>Callback</dt>
            <dd>${job.callback_url ?? '–'}</dd>
          </div>
        </dl>
        ${actions.length === 0 ? '' : html`<div class="actions">${actions}</div>`}
      </section>
      <section aria-labelledby="h-input">
        <h2 id="h-input">Input</h2>
        ${json(job.input)}
      </section>
      <section aria-labelledby="h-meta">
        <h2 id="h-meta">Metadata</h2>
        ${json(job.metadata)}
      </section>
      <section aria-labelledby="h-result">
        <h2 id="h-result">Result</h2>
        ${json(job.result)}
      </section>
      <section aria-labelledby="h-errors">
        <h2 id="h-errors">Errors of attempts</h2>
        ${
          job.error_history.length === 0 && job.error === null
            ? html`<p>None.</p>`
            : html`<ol>
                  ${job.error_history.map((e) => html`<li>${json(e)}</li>`)}
                </ol>
                ${
                  job.error === null
                    ? ''
                    : html`<h3>Final error</h3>
                        ${json(job.error)}`
                }`
        }
      </section>
      <section aria-labelledby="h-cp">
        <h2 id="h-cp">Last checkpoint</h2>
        <dl class="facts">
          <div>
            <dt>When</dt>
            <dd>${when(checkpoint?.checkpoint_at)}</dd>
          </div>
          <div>
            <dt>State size</dt>
            <dd>${checkpoint?.state_bytes == null ? '–' : `${checkpoint.state_bytes.toLocaleString('en')} bytes`}</dd>
          </div>
          <div>
            <dt>Held by</dt>
            <dd>${checkpoint?.lease_owner ?? '–'}</dd>
          </div>
        </dl>
        <h3>Cursor</h3>
        ${json(checkpoint?.checkpoint_cursor ?? null)}
      </section>
      <section aria-labelledby="h-art">
        <h2 id="h-art">Artifacts</h2>
        ${
          links.length === 0
            ? html`<p>None.</p>`
            : html`<ul>
                ${links.map((l) => html`<li><a href="${l.url}" download>${l.name}</a> (${l.content_type}, ${l.size.toLocaleString('en')} bytes)</li>`)}
              </ul>`
        }
      </section>
      <section aria-labelledby="h-wh">
        <h2 id="h-wh">Webhook deliveries</h2>
        ${
          deliveries.length === 0
            ? html`<p>None.</p>`
            : deliveries.map(
                (d) =>
                  html`<article class="delivery">
                    <h3>${d.event_type} → ${d.url}</h3>
                    <p>
                      ${d.status}, ${d.attempts}
                      attempt(s)${d.last_error === null ? '' : html`, last error: ${d.last_error}`}
                    </p>
                    ${d.status === 'PENDING' ? '' : actionForm(session, `/console/jobs/${id}/deliveries/${d.id}/redeliver`, 'Redeliver', 'Send this webhook again?')}
                    <div class="scroll">
                      <table>
                        <thead>
                          <tr>
                            <th scope="col">#</th>
                            <th scope="col">Started</th>
                            <th scope="col">Status</th>
                            <th scope="col">Duration</th>
                            <th scope="col">Response or error</th>
                          </tr>
                        </thead>
                        <tbody>
                          ${(attempts.get(d.id) ?? []).map(
                            (a) =>
                              html`<tr>
                                <td>${a.n}</td>
                                <td>${when(a.started_at)}</td>
                                <td>${a.status_code ?? '–'}</td>
                                <td>${a.duration_ms} ms</td>
                                <td><pre class="excerpt">${(a.response ?? a.error ?? '').slice(0, 500)}</pre></td>
                              </tr>`,
                          )}
                        </tbody>
                      </table>
                    </div>
                  </article>`,
              )
        }
      </section>
      <section aria-labelledby="h-tl">
        <h2 id="h-tl">Timeline</h2>
        <ol class="timeline">
          ${events.map((e) => html`<li>${when(e.createdAt)} <strong>${e.kind}</strong> <code>${JSON.stringify(e.data)}</code></li>`)}
        </ol>
      </section>`;
    return c.html(
      await page(`Job ${id.slice(0, 8)}`, session, '/console/jobs', body, { notice: c.req.query('notice') }),
    );
  });

  // A stream token for a job this session may see, so the page's script can open the job's event stream.
  app.post('/console/jobs/:id/stream-token', async (c) => {
    const id = pathId(c, 'id', 'job');
    const { tenantId } = await visibleJob(c, deps, id);
    const { token } = await signer.sign('stream', { sub: tenantId, job: id }, config.streamTokenTtlSeconds);
    return c.json({ events_path: `/v1/jobs/${id}/events?token=${encodeURIComponent(token)}` });
  });

  app.post('/console/jobs/:id/cancel', async (c) => {
    const id = pathId(c, 'id', 'job');
    const { tenantId } = await visibleJob(c, deps, id);
    const out = await withTransaction(pool, (db) => cancelJob(db, tenantId, id));
    if (out.kind === 'not-found') throw new ApiError('not-found', `no job with id ${id}`);
    c.get('log').info({ job_id: id, outcome: out.kind }, 'console: job cancel');
    const notice =
      out.kind === 'cancelled' ? 'cancelled' : out.kind === 'requested' ? 'cancel-requested' : 'already-finished';
    return done(c, `/console/jobs/${id}`, notice);
  });

  app.post('/console/jobs/:id/retry', async (c) => {
    const id = pathId(c, 'id', 'job');
    const from = (await formOf(c)).one('from') === 'start' ? 'start' : 'checkpoint';
    const { tenantId } = await visibleJob(c, deps, id);
    const out = await withTransaction(pool, (db) => replayJob(db, boss, registry, tenantId, id, from));
    if (out.kind === 'not-found') throw new ApiError('not-found', `no job with id ${id}`);
    c.get('log').info({ job_id: id, from, outcome: out.kind }, 'console: job retry');
    return done(c, `/console/jobs/${id}`, out.kind === 'replayed' ? 'retried' : 'not-failed');
  });

  app.post('/console/jobs/:id/deliveries/:delivery/redeliver', async (c) => {
    const id = pathId(c, 'id', 'job');
    const delivery = pathId(c, 'delivery', 'delivery');
    const { tenantId } = await visibleJob(c, deps, id);
    if (!((await deliveriesOfJob(pool, tenantId, id)) ?? []).some((d) => d.id === delivery))
      throw new ApiError('not-found', `no delivery with id ${delivery}`);
    await redeliver(pool, tenantId, { ids: [delivery] });
    c.get('log').info({ job_id: id, delivery_id: delivery }, 'console: redeliver');
    return done(c, `/console/jobs/${id}`, 'redelivered');
  });
}
