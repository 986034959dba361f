/**
 * POST /v1/jobs served on Node's own request and response. Under @hono/node-server every request is
 * wrapped in Fetch-API objects (Request, Headers, Response) and passes Hono's router, middleware chain
 * and validator; for the one route partners call at volume that machinery costs several times the
 * rest of the request (docs/architecture.md, "The submission path"). The lane takes only that route and runs the same steps
 * as the Hono route, in the same order, through the same functions: request id, API-key auth, JSON
 * body checks, the CreateJob schema, acceptJob(), problem+json errors, metrics and the log line.
 * Everything else, and any request the lane does not take, goes to Hono; test/submit-lane.test.ts
 * checks that both answer alike.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallbackAllowList } from '../webhooks/allowlist.ts';
import type { AppDeps } from './context.ts';
import { corsHeaders } from './cors.ts';
import { ApiError, apiErrorOf, databaseUnavailable, invalidRequest, problemOf } from './errors.ts';
import { parseJson } from './json-body.ts';
import {
  checkJsonHeaders,
  observeRequest,
  readLimited,
  requestIdOf,
  sentStatus,
  urlHasNul,
  type ApiKeys,
} from './middleware.ts';
import { acceptJob } from '../jobs/accept.ts';
import { acceptedHeaders, refusalProblem } from './routes/jobs.ts';
import { CreateJobSchema } from './schemas.ts';
import { serverSpan } from '../observability/tracing.ts';

/** Serves the request and returns true, or returns false and leaves it alone. */
export type NodeLane = (req: IncomingMessage, res: ServerResponse) => boolean;

const ROUTE = '/v1/jobs';

/** Whether a request target is /v1/jobs, with or without a query (as Hono routes it); one with an encoded NUL is Hono's to refuse. */
function isJobsTarget(url: string | undefined): boolean {
  if (url === undefined || !url.startsWith(ROUTE) || urlHasNul(url)) return false;
  return url.length === ROUTE.length || url.charCodeAt(ROUTE.length) === 0x3f; // '?'
}

export function submitLane(deps: AppDeps, allow: CallbackAllowList, keys: ApiKeys): NodeLane {
  const { log, metrics, config } = deps;

  function send(
    res: ServerResponse,
    status: number,
    contentType: string,
    headers: Record<string, string>,
    body: string,
  ): void {
    res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<number> {
    const startedMs = performance.now();
    const requestId = requestIdOf(header(req, 'x-request-id'));
    const fields: Record<string, string> = { request_id: requestId };
    const cors = corsHeaders(config.corsOrigins, header(req, 'origin'));
    let status: number;
    try {
      if (deps.database?.connected === false) throw databaseUnavailable();
      const tenant = await keys.tenantFor(header(req, 'authorization'));
      fields.tenant_id = tenant.id;
      checkJsonHeaders(header(req, 'content-type'), header(req, 'content-length'), config.bodyLimitBytes);
      const json = parseJson(
        await readLimited(req.iterator({ destroyOnReturn: false }), config.bodyLimitBytes),
        config.json,
      );
      const body = CreateJobSchema.safeParse(json);
      if (!body.success) throw invalidRequest('json', body.error.issues);
      const accepted = await acceptJob(deps, allow, tenant, body.data, header(req, 'idempotency-key'));
      if (accepted.kind !== 'accepted') throw refusalProblem(accepted);
      status = 202;
      send(
        res,
        status,
        'application/json',
        { 'X-Request-Id': requestId, ...cors, ...acceptedHeaders(accepted) },
        JSON.stringify(accepted.job),
      );
    } catch (caught) {
      let problem = apiErrorOf(caught);
      if (problem === undefined) {
        log.error({ ...fields, err: caught }, 'unhandled error');
        problem = new ApiError('internal', 'an internal error occurred; quote the request id when reporting it');
      }
      status = problem.status;
      if (!res.headersSent) {
        send(
          res,
          status,
          'application/problem+json',
          { 'X-Request-Id': requestId, ...cors, ...problem.headers },
          JSON.stringify(problemOf(problem, requestId, ROUTE)),
        );
      }
    }
    observeRequest(
      log,
      metrics,
      { method: 'POST', route: ROUTE, path: ROUTE, status: sentStatus(req, status), startedMs },
      fields,
    );
    return sentStatus(req, status);
  }

  return (req, res) => {
    if (req.method !== 'POST' || !isJobsTarget(req.url)) return false;
    serverSpan('POST /v1/jobs', req.headers, { 'http.request.method': 'POST', 'http.route': ROUTE }, () =>
      serve(req, res),
    ).catch((err: unknown) => log.error({ err }, 'POST /v1/jobs failed after answering'));
    return true;
  };
}

/** A request header as Fetch's Headers.get() would give it (repeated headers joined by ", "). */
function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}
