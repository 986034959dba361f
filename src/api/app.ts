/** createApp(deps): the Hono app with every route, the error mapping and the OpenAPI document. */
import { OpenAPIHono } from '@hono/zod-openapi';
import { createNodeWebSocket } from '@hono/node-ws';
import type { ServerType } from '@hono/node-server';
import { HTTPException } from 'hono/http-exception';
import type { Context, MiddlewareHandler } from 'hono';
import { CallbackAllowList } from '../webhooks/allowlist.ts';
import type { App, AppDeps, AppEnv } from './context.ts';
import { ApiError, apiErrorOf, invalidRequest, problemOf } from './errors.ts';
import {
  adminAuth,
  ApiKeys,
  apiKeyAuth,
  failFastWithoutDatabase,
  readBody,
  refuseNulInUrl,
  requestContext,
} from './middleware.ts';
import { corsMiddleware } from './cors.ts';
import { registerSecuritySchemes } from './openapi.ts';
import { submitLane, type NodeLane } from './submit-lane.ts';
import { registerDocsRoutes } from './routes/docs.ts';
import { registerAdminRoutes } from './routes/admin.ts';
import { registerTenantLimitRoutes } from './routes/tenant-limits.ts';
import { registerScheduleRoutes } from './routes/schedules.ts';
import { registerEventRoutes, usesStreamToken } from './routes/events.ts';
import { registerArtifactRoutes } from './routes/artifacts.ts';
import { registerDeliveryRoutes } from './routes/deliveries.ts';
import { registerDeliveryReplayRoutes } from './routes/delivery-replays.ts';
import { registerWebhookEndpointRoutes } from './routes/webhook-endpoints.ts';
import { registerWebhookEventDocs } from './routes/webhook-events.ts';
import { registerWebhookSigningRoutes } from './routes/webhook-signing.ts';
import { registerDeadLetterRoutes } from './routes/dead-letters.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerJobRoutes } from './routes/jobs.ts';

export interface AppHandle {
  app: App;
  /** Marks the process as draining: /readyz answers 503 so load balancers stop sending traffic. */
  setDraining: () => void;
  /** Lets the server hand WebSocket upgrades to the app (call once with the listening server). */
  injectWebSocket: (server: ServerType) => void;
  /** POST /v1/jobs on Node's request and response, ahead of Hono (src/api/submit-lane.ts); false for any other request. */
  lane: NodeLane;
}

function problemResponse(c: Context<AppEnv>, err: ApiError): Response {
  const body = problemOf(err, c.get('requestId'), c.req.path);
  for (const [k, v] of Object.entries(err.headers ?? {})) c.header(k, v);
  return c.body(JSON.stringify(body), err.status as 400, { 'Content-Type': 'application/problem+json' });
}

/** The methods routed for a path (HEAD with GET, as Hono answers it): what a 405's Allow header lists. */
function allowedMethods(app: App, path: string): string[] {
  const methods = new Set<string>();
  for (const r of app.routes) {
    if (r.method === 'ALL') continue;
    const re = new RegExp(
      '^' +
        r.path
          .split('/')
          .map((seg) =>
            seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
          )
          .join('/') +
        '$',
    );
    if (re.test(path)) {
      methods.add(r.method);
      if (r.method === 'GET') methods.add('HEAD');
    }
  }
  return [...methods].sort();
}

/** `handler`, for every request whose path does not start with `prefix`. */
function except(prefix: string, handler: MiddlewareHandler<AppEnv>): MiddlewareHandler<AppEnv> {
  return async (c, next) => (c.req.path.startsWith(prefix) ? next() : handler(c, next));
}

export function createApp(deps: AppDeps): AppHandle {
  let draining = false;
  const app: App = new OpenAPIHono<AppEnv>({
    // Validation failures of parameters and bodies become 422 problems naming the fields.
    defaultHook: (result) => {
      if (!result.success) throw invalidRequest(result.target, result.error.issues);
    },
  });
  const allow = new CallbackAllowList(deps.config.callbackAllow);
  const keys = new ApiKeys(deps.pool, deps.config.authCacheSeconds);

  app.use('*', requestContext(deps.log, deps.metrics));
  app.use('*', refuseNulInUrl());
  // Before authentication: a preflight carries no credentials.
  if (deps.config.corsOrigins.length > 0) app.use('/v1/*', corsMiddleware(deps.config.corsOrigins));
  app.use('/v1/*', failFastWithoutDatabase(deps.database));
  app.use('/v1/*', apiKeyAuth(keys, '/v1/admin/', usesStreamToken));
  app.use('/v1/admin/*', adminAuth(deps.config.adminToken));
  // After authentication (a stranger's body is not read), before every route (a refused body changes nothing).
  // The operator console (src/console) takes HTML forms and reads its own bodies, after its session check.
  app.use('*', except('/console/', readBody(deps.config.bodyLimitBytes, deps.config.json)));
  const ws = createNodeWebSocket({ app });

  registerHealthRoutes(app, deps, () => draining);
  registerAdminRoutes(app, deps);
  registerTenantLimitRoutes(app, deps);
  registerJobRoutes(app, deps, allow);
  registerScheduleRoutes(app, deps, allow);
  registerEventRoutes(app, deps, ws.upgradeWebSocket);
  registerArtifactRoutes(app, deps);
  registerWebhookEventDocs(app);
  registerDeliveryRoutes(app, deps);
  registerDeliveryReplayRoutes(app, deps);
  registerWebhookEndpointRoutes(app, deps);
  registerWebhookSigningRoutes(app, deps);
  registerDeadLetterRoutes(app, deps);
  registerDocsRoutes(app, deps.registry);
  registerSecuritySchemes(app);

  app.notFound((c) => {
    const allow = allowedMethods(app, c.req.path);
    return problemResponse(
      c,
      allow.length > 0
        ? new ApiError(
            'method-not-allowed',
            `${c.req.method} is not allowed on ${c.req.path}; use ${allow.join(', ')}`,
            {
              headers: { Allow: allow.join(', ') },
            },
          )
        : new ApiError('not-found', `no route for ${c.req.method} ${c.req.path}`),
    );
  });
  app.onError((err, c) => {
    const known = apiErrorOf(err);
    if (known !== undefined) return problemResponse(c, known);
    if (err instanceof HTTPException && err.status < 500) {
      const code = err.status === 413 ? 'payload-too-large' : err.status === 401 ? 'unauthorized' : 'bad-request';
      return problemResponse(c, new ApiError(code, err.message));
    }
    (c.get('log') ?? deps.log).error({ err }, 'unhandled error');
    return problemResponse(
      c,
      new ApiError('internal', 'an internal error occurred; quote the request id when reporting it'),
    );
  });
  return {
    app,
    setDraining: () => void (draining = true),
    injectWebSocket: (server) => ws.injectWebSocket(server),
    lane: submitLane(deps, allow, keys),
  };
}
