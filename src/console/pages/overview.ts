/** The overview: jobs by status and type, finished per minute, oldest pending, dead letters, alerts, workers. */
import { html } from 'hono/html';
import { jobsOverview, OVERVIEW_COUNT_CAP, type Figure, type JobsOverview } from '../../jobs/overview.ts';
import { activeAlerts } from '../../alerts/alerts.ts';
import { countDeadDeliveries, DEAD_COUNT_CAP } from '../../webhooks/store.ts';
import { countLiveWorkers } from '../../worker/presence.ts';
import type { ConsoleApp, ConsoleDeps } from '../context.ts';
import { tenantScope } from '../context.ts';
import { page, when, type Html } from '../layout.ts';
import { scopeOf } from '../session.ts';

const fmt = (n: number) => n.toLocaleString('en');
const figure = (f: Figure): Html =>
  f.estimated ? html`<abbr title="estimate from table statistics">≈${fmt(f.n)}</abbr>` : html`${fmt(f.n)}`;

function ageOf(since: Date | null): string {
  if (since === null) return 'none waiting';
  const s = Math.max(0, Math.round((Date.now() - since.getTime()) / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

/** Completed and failed per minute as an SVG bar chart, with the figures in a table for screen readers. */
function chart(perMinute: JobsOverview['perMinute']): Html {
  const w = 600;
  const h = 120;
  const max = Math.max(1, ...perMinute.map((m) => m.completed + m.failed));
  const bw = w / Math.max(1, perMinute.length);
  const bars = perMinute.map((m, i) => {
    const ch = (m.completed / max) * h;
    const fh = (m.failed / max) * h;
    return html`<rect
        class="ok"
        x="${(i * bw).toFixed(1)}"
        y="${(h - ch).toFixed(1)}"
        width="${(bw - 1).toFixed(1)}"
        height="${ch.toFixed(1)}"
      ></rect
      ><rect
        class="bad"
        x="${(i * bw).toFixed(1)}"
        y="${(h - ch - fh).toFixed(1)}"
        width="${(bw - 1).toFixed(1)}"
        height="${fh.toFixed(1)}"
      ></rect>`;
  });
  const total = perMinute.reduce((a, m) => ({ c: a.c + m.completed, f: a.f + m.failed }), { c: 0, f: 0 });
  return html`<figure class="chart">
    <svg viewBox="0 0 ${w} ${h}" role="img" aria-labelledby="chart-caption" preserveAspectRatio="none">${bars}</svg>
    <figcaption id="chart-caption">
      Finished per minute, last hour: ${fmt(total.c)} completed (green), ${fmt(total.f)} failed (red); tallest bar
      ${fmt(max)}.
    </figcaption>
  </figure>`;
}

type Figures = [JobsOverview, number, Awaited<ReturnType<typeof activeAlerts>>, number];

/**
 * The overview's figures of each scope (every tenant, or one), read once and shown to every view of
 * that scope for `seconds`: operators who keep the overview open and reload it cost the database one
 * read per interval, not one per view. A read in progress is shared by the views that arrive meanwhile;
 * one that fails is not kept.
 */
function snapshots(seconds: number, read: (tenantId: string | undefined) => Promise<Figures>) {
  const kept = new Map<string, { at: number; figures: Promise<Figures> }>();
  return (tenantId: string | undefined): Promise<{ figures: Figures; at: number }> => {
    const now = Date.now();
    for (const [key, k] of kept) if (now - k.at >= seconds * 1000) kept.delete(key);
    const key = tenantId ?? '';
    let entry = kept.get(key);
    if (entry === undefined) {
      entry = { at: now, figures: read(tenantId) };
      const mine = entry;
      if (seconds > 0) kept.set(key, mine);
      mine.figures.catch(() => {
        if (kept.get(key) === mine) kept.delete(key);
      });
    }
    const at = entry.at;
    return entry.figures.then((figures) => ({ figures, at }));
  };
}

export function registerOverviewPage(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool, registry, config } = deps;
  const figuresOf = snapshots(config.consoleOverviewSeconds, (tenantId) =>
    Promise.all([
      jobsOverview(pool, tenantId, registry.names()),
      countDeadDeliveries(pool, tenantId),
      activeAlerts(pool, tenantId, 20),
      countLiveWorkers(pool, config.worker.leaseSeconds),
    ]),
  );
  app.get('/console', async (c) => {
    const session = c.get('session');
    const tenantId = scopeOf(session) ?? tenantScope(c);
    const {
      figures: [o, deadDeliveries, alerts, workers],
      at,
    } = await figuresOf(tenantId);
    const body = html`<section aria-labelledby="h-status">
        <h2 id="h-status">Jobs by status</h2>
        <dl class="stats">
          ${Object.entries(o.byStatus).map(
            ([status, f]) =>
              html`<div>
                <dt><a href="/console/jobs?status=${status}">${status}</a></dt>
                <dd>${figure(f)}</dd>
              </div>`,
          )}
          <div>
            <dt>Oldest pending</dt>
            <dd>${ageOf(o.oldestPendingSince)}</dd>
          </div>
          <div>
            <dt>Workers online</dt>
            <dd><a href="/console/workers">${fmt(workers)}</a></dd>
          </div>
          <div>
            <dt>Dead jobs</dt>
            <dd><a href="/console/dead-letters">${figure(o.deadJobs)}</a></dd>
          </div>
          <div>
            <dt>Dead deliveries</dt>
            <dd>
              <a href="/console/dead-letters#deliveries"
                >${deadDeliveries > DEAD_COUNT_CAP ? `more than ${fmt(DEAD_COUNT_CAP)}` : fmt(deadDeliveries)}</a
              >
            </dd>
          </div>
        </dl>
        <p>Figures read at ${when(new Date(at))} UTC, again at most every ${config.consoleOverviewSeconds} s.</p>
      </section>
      <section aria-labelledby="h-chart">
        <h2 id="h-chart">Throughput</h2>
        ${chart(o.perMinute)}
      </section>
      <section aria-labelledby="h-types">
        <h2 id="h-types">Jobs by type</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Type</th>
              <th scope="col">Jobs</th>
            </tr>
          </thead>
          <tbody>
            ${o.byType.map(
              (t) =>
                html`<tr>
                  <td><a href="/console/jobs?type=${t.type}">${t.type}</a></td>
                  <td>${figure(t)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="h-alerts">
        <h2 id="h-alerts">Active alerts</h2>
        ${
          alerts.length === 0
            ? html`<p>None.</p>`
            : html`<ul class="alerts">
                ${alerts.map((a) => html`<li><strong>${a.kind}</strong> since ${when(a.raised_at)}: ${a.message}</li>`)}
              </ul>`
        }
      </section>
      <p class="hint">
        Counts marked ≈ are the planner's estimates from table statistics; active and dead jobs are counted exactly up
        to ${fmt(OVERVIEW_COUNT_CAP)}.
      </p>`;
    return c.html(await page('Overview', session, '/console', body, { notice: c.req.query('notice') }));
  });
}
