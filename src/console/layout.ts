/**
 * The console's page shell and small shared pieces, rendered with Hono's `html` helper, which escapes
 * every interpolated value: whatever a job or a receiver supplied is only ever text.
 */
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { Session } from './session.ts';

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** Every console response's Content-Security-Policy: only longhaul's own script and style, no framing. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const NAV: Array<{ href: string; label: string; admin?: boolean }> = [
  { href: '/console', label: 'Overview' },
  { href: '/console/jobs', label: 'Jobs' },
  { href: '/console/dead-letters', label: 'Dead letters' },
  { href: '/console/endpoints', label: 'Webhook endpoints' },
  { href: '/console/schedules', label: 'Schedules' },
  { href: '/console/workers', label: 'Workers' },
  { href: '/console/tenants', label: 'Tenants', admin: true },
];

/** Results of actions, shown after the redirect; only these fixed texts, never text from the request. */
export const NOTICES: Record<string, string> = {
  cancelled: 'The job was cancelled.',
  'cancel-requested': 'Cancellation requested: the job stops at its next checkpoint.',
  'already-finished': 'The job had already finished; nothing was changed.',
  retried: 'The job was queued again.',
  'not-failed': 'Only a FAILED job can be retried; nothing was changed.',
  redelivered: 'The webhook was queued for delivery again.',
  replayed: 'The selected dead jobs were queued again.',
  'redelivered-many': 'The selected deliveries were queued for delivery again.',
  'nothing-selected': 'Nothing was selected.',
  'tenant-created': 'The tenant was created.',
  'key-created': 'The API key was created.',
  'key-revoked': 'The API key was revoked.',
  'secret-rotated': 'The webhook secret was rotated.',
  'endpoint-enabled': 'The endpoint is enabled: its waiting deliveries are being sent.',
  'schedule-paused': 'The schedule was paused: it creates no job until it is resumed.',
  'schedule-resumed': 'The schedule was resumed: it fires at its next occurrence.',
  'limits-changed': "The tenant's limits were changed.",
  'limits-unchanged': 'The limits were as given; nothing was changed.',
};

export function page(
  title: string,
  session: Session | undefined,
  current: string,
  body: Html,
  opts: { notice?: string | undefined; secret?: { label: string; value: string } | undefined } = {},
): Html {
  const notice = opts.notice === undefined ? undefined : NOTICES[opts.notice];
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="same-origin" />
        ${session === undefined ? '' : html`<meta name="csrf-token" content="${session.csrf}" />`}
        <title>${title} · longhaul</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <script src="/console/assets/console.js" defer></script>
      </head>
      <body>
        <header class="top">
          <a class="brand" href="/console">longhaul</a>
          ${
            session === undefined
              ? ''
              : html`<nav aria-label="Console">
                    <ul>
                      ${NAV.filter((n) => n.admin !== true || session.kind === 'admin').map(
                        (n) =>
                          html`<li>
                            <a href="${n.href}" ${n.href === current ? html` aria-current="page"` : ''}>${n.label}</a>
                          </li>`,
                      )}
                    </ul>
                  </nav>
                  <form method="post" action="/console/sign-out" class="signout">
                    <input type="hidden" name="csrf" value="${session.csrf}" />
                    <span class="who"
                      >${session.kind === 'admin' ? 'Admin (all tenants)' : `Tenant ${session.tenant.name}`}</span
                    >
                    <button type="submit">Sign out</button>
                  </form>`
          }
        </header>
        <main id="main">
          <h1>${title}</h1>
          ${notice === undefined ? '' : html`<p class="notice" role="status">${notice}</p>`}
          ${
            opts.secret === undefined
              ? ''
              : html`<div class="secret" role="status">
                  <p>${opts.secret.label} (shown only now; copy it):</p>
                  <pre class="json">${opts.secret.value}</pre>
                </div>`
          }
          ${body}
        </main>
      </body>
    </html>`;
}

/** A percentage bar: a native progress element with an explicit progressbar role and value for assistive tech. */
export function progressBar(jobId: string, percent: number | null, live: boolean, label: string): Html {
  const value = percent ?? 0;
  return html`<span class="bar"
    ><progress
      max="100"
      value="${value}"
      role="progressbar"
      aria-valuemin="0"
      aria-valuemax="100"
      aria-valuenow="${value}"
      aria-label="${label}"
      data-job="${jobId}"
      ${live ? html` data-live="1"` : ''}
    ></progress
    ><span class="pct" data-pct="${jobId}">${percent === null ? '–' : `${value}%`}</span></span
  >`;
}

export const when = (d: Date | null | undefined): Html =>
  d === null || d === undefined
    ? html`–`
    : html`<time datetime="${d.toISOString()}">${d.toISOString().replace('T', ' ').slice(0, 19)}</time>`;

/** JSON a job or receiver supplied, shown as (escaped) preformatted text. */
export const json = (v: unknown): Html =>
  html`<pre class="json">${v === undefined ? '' : JSON.stringify(v, null, 2)}</pre>`;

export const hidden = (name: string, value: string): Html =>
  html`<input type="hidden" name="${name}" value="${value}" />`;

/** An admin's choice of the tenant whose rows a per-tenant page lists (a GET back to `action`). */
export function tenantPicker(
  action: string,
  tenants: ReadonlyArray<{ id: string; name: string }>,
  chosen?: string,
): Html {
  return html`<form method="get" action="${action}" class="filters" aria-label="Choose a tenant">
    <label for="f-tenant">Tenant</label
    ><select id="f-tenant" name="tenant">
      ${tenants.map((t) => html`<option value="${t.id}" ${t.id === chosen ? html` selected` : ''}>${t.name}</option>`)}</select
    ><button type="submit">Show</button>
  </form>`;
}

/** A POST button with a confirmation (asked by console.js) and the session's CSRF token. */
export function actionForm(
  session: Session,
  action: string,
  label: string,
  confirmText: string,
  fields: Html[] = [],
): Html {
  return html`<form method="post" action="${action}" class="action" data-confirm="${confirmText}">
    ${hidden('csrf', session.csrf)}${fields}<button type="submit">${label}</button>
  </form>`;
}

export function errorPage(status: number, message: string, session: Session | undefined): Html {
  return page(
    status === 404 ? 'Not found' : 'Something went wrong',
    session,
    '',
    html`<p class="error" role="alert">${message}</p>
      <p><a href="/console">Back to the overview</a></p>`,
  );
}
