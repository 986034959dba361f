/**
 * The operator console under /console, served by the API process: sign-in, the pages, their actions
 * and the console's own script and stylesheet (no CDN). Pages are rendered on the server; the script
 * only confirms actions and moves progress bars from the job event streams.
 */
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { html } from 'hono/html';
import { ApiError, apiErrorOf } from '../api/errors.ts';
import type { ConsoleApp, ConsoleContext, ConsoleDeps, ConsoleEnv } from './context.ts';
import { formOf } from './context.ts';
import { CSP, errorPage, page } from './layout.ts';
import { registerDeadLetterPages } from './pages/dead-letters.ts';
import { registerEndpointPages } from './pages/endpoints.ts';
import { registerJobPages } from './pages/jobs.ts';
import { registerOverviewPage } from './pages/overview.ts';
import { registerSchedulePages } from './pages/schedules.ts';
import { registerTenantPages } from './pages/tenants.ts';
import { registerWorkerPages } from './pages/workers.ts';
import { csrfOk, endSession, sameOrigin, sessionOf, signIn, startSession } from './session.ts';

const asset = (name: string) => readFileSync(new URL(`./assets/${name}`, import.meta.url), 'utf8');
const SCRIPT = asset('console.js');
const STYLE = asset('console.css');

function signInPage(failed: boolean) {
  return page(
    'Sign in',
    undefined,
    '',
    html`<form method="post" action="/console/sign-in" class="signin">
      ${failed ? html`<p class="error" role="alert">That token or key is not valid.</p>` : ''}
      <p>Sign in with the admin token (every tenant) or a tenant's API key (that tenant only).</p>
      <label for="secret">Admin token or API key</label>
      <input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus />
      <button type="submit">Sign in</button>
    </form>`,
  );
}

export function createConsole(deps: ConsoleDeps): ConsoleApp {
  const app: ConsoleApp = new Hono<ConsoleEnv>();
  const { pool, signer, config } = deps;

  app.use('/console/*', async (c, next) => {
    await next();
    c.header('Content-Security-Policy', CSP);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'same-origin');
    c.header('X-Frame-Options', 'DENY');
    if (!c.req.path.startsWith('/console/assets/')) c.header('Cache-Control', 'no-store');
  });
  app.use('/console/*', bodyLimit({ maxSize: config.bodyLimitBytes }));

  app.get('/console/assets/console.js', (c) =>
    c.body(SCRIPT, 200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache' }),
  );
  app.get('/console/assets/console.css', (c) =>
    c.body(STYLE, 200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'no-cache' }),
  );

  app.get('/console/sign-in', async (c) => c.html(await signInPage(c.req.query('failed') === '1')));
  app.post('/console/sign-in', async (c) => {
    // SameSite cookies do not guard sign-in itself: refuse a cross-site form (login CSRF).
    if (!sameOrigin(c)) throw new ApiError('forbidden', 'sign in from the console page itself');
    const secret = (await formOf(c)).one('secret') ?? '';
    const who = secret === '' ? undefined : await signIn(pool, config.adminToken, secret);
    if (who === undefined) {
      c.get('log').info('console sign-in refused');
      return c.redirect('/console/sign-in?failed=1', 303);
    }
    await startSession(c, signer, who, config.consoleSessionSeconds);
    c.get('log').info(
      who.kind === 'admin' ? { console: 'admin' } : { console: 'tenant', tenant_id: who.tenant.id, key_id: who.keyId },
      'console session started',
    );
    return c.redirect('/console', 303);
  });

  // Every other page needs a session; every POST its CSRF token.
  app.use('/console/*', async (ctx, next) => {
    const c = ctx as ConsoleContext;
    if (c.req.path.startsWith('/console/assets/') || c.req.path === '/console/sign-in') return next();
    const session = await sessionOf(c, signer, pool);
    if (session === undefined) {
      if (c.req.method === 'GET') return c.redirect('/console/sign-in', 303);
      throw new ApiError('unauthorized', 'the console session has ended; sign in again');
    }
    c.set('session', session);
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const type = c.req.header('content-type') ?? '';
      const given =
        c.req.header('x-csrf-token') ??
        (/^(application\/x-www-form-urlencoded|multipart\/form-data)/.test(type)
          ? (await formOf(c)).one('csrf')
          : undefined);
      if (!csrfOk(c, session, given))
        throw new ApiError('forbidden', 'the form has expired; reload the page and try again');
    }
    return next();
  });

  app.post('/console/sign-out', (c) => {
    endSession(c);
    return c.redirect('/console/sign-in', 303);
  });

  registerOverviewPage(app, deps);
  registerJobPages(app, deps);
  registerDeadLetterPages(app, deps);
  registerEndpointPages(app, deps);
  registerSchedulePages(app, deps);
  registerWorkerPages(app, deps);
  registerTenantPages(app, deps);

  app.notFound(async (c) => c.html(await errorPage(404, 'There is no such console page.', c.get('session')), 404));
  app.onError(async (err, c) => {
    const known = apiErrorOf(err);
    if (known === undefined) c.get('log').error({ err }, 'console error');
    const status = known?.status ?? 500;
    const message = known?.message ?? 'An internal error occurred; quote the request id when reporting it.';
    return c.html(await errorPage(status, message, c.get('session')), status as 500);
  });
  return app;
}
