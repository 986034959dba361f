/**
 * The one error type of the API and its code → status table. Every error response is RFC 9457
 * `application/problem+json` with a stable `type` URI derived from the code; handled in one place.
 */
import { isConnectionError } from '../db/pool.ts';

export const PROBLEM_BASE = 'https://longhaul.dev/problems/';

/** What a client is told to wait (Retry-After, seconds) while the database cannot be reached. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 2;

/** Every kind of error the API returns: its HTTP status and its human title. */
export const ERROR_CODES = {
  'validation-error': { status: 422, title: 'The request is not valid' },
  'malformed-json': { status: 400, title: 'The body is not valid JSON' },
  'bad-request': { status: 400, title: 'The request is malformed' },
  'unsupported-media-type': { status: 415, title: 'Unsupported content type' },
  'payload-too-large': { status: 413, title: 'The body is too large' },
  'json-too-complex': { status: 422, title: 'The JSON body is nested too deeply, too wide or has too long a string' },
  unauthorized: { status: 401, title: 'Missing or invalid credentials' },
  forbidden: { status: 403, title: 'Not allowed' },
  'not-found': { status: 404, title: 'Not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'invalid-state': { status: 409, title: 'The resource is not in a state that allows this' },
  'idempotency-key-in-use': { status: 409, title: 'A request with this Idempotency-Key is still being processed' },
  'idempotency-key-reused': { status: 422, title: 'This Idempotency-Key was used with a different request' },
  'unknown-job-type': { status: 422, title: 'Unknown job type' },
  'rate-limited': { status: 429, title: "The tenant's submission rate is exceeded" },
  'too-many-pending-jobs': { status: 429, title: 'The tenant has as many pending jobs as its limit allows' },
  'admin-disabled': { status: 404, title: 'The admin API is not enabled' },
  'not-acceptable': { status: 406, title: 'Not acceptable' },
  'service-unavailable': { status: 503, title: 'The service is not ready' },
  internal: { status: 500, title: 'Internal server error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface FieldError {
  /** JSON pointer-like path of the failing field, e.g. `input.chunks`. */
  field: string;
  message: string;
}

export class ApiError extends Error {
  override name = 'ApiError';
  readonly code: ErrorCode;
  readonly detail: string;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    opts: { errors?: FieldError[]; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(detail, { cause: opts.cause });
    this.code = code;
    this.detail = detail;
    this.errors = opts.errors;
    this.headers = opts.headers;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

/** The 503 of a request that needs the database while it cannot be reached: a retry later succeeds. */
export function databaseUnavailable(cause?: unknown): ApiError {
  return new ApiError(
    'service-unavailable',
    'the database cannot be reached at the moment; retry later (with the same Idempotency-Key, a job is not submitted twice)',
    { headers: { 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_SECONDS) }, cause },
  );
}

/** The error a failure answers with: itself if an ApiError, a 503 if the database could not be reached, else undefined (a bug). */
export function apiErrorOf(err: unknown): ApiError | undefined {
  if (err instanceof ApiError) return err;
  if (isConnectionError(err)) return databaseUnavailable(err);
  return undefined;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  request_id?: string;
  errors?: FieldError[];
}

export function problemOf(err: ApiError, requestId: string | undefined, instance?: string): Problem {
  const { status, title } = ERROR_CODES[err.code];
  return {
    type: PROBLEM_BASE + err.code,
    title,
    status,
    detail: err.detail,
    ...(instance === undefined ? {} : { instance }),
    ...(requestId === undefined ? {} : { request_id: requestId }),
    ...(err.errors === undefined ? {} : { errors: err.errors }),
  };
}

/**
 * The 422 for a request part (`json` body, `query`, `param`, `header`) its schema refused; a 400 naming
 * them for query parameters the endpoint does not have (a misspelt filter must not read as no filter).
 */
export function invalidRequest(
  target: string,
  issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string; code?: string; keys?: string[] }>,
): ApiError {
  const unknown =
    target === 'query' ? issues.flatMap((i) => (i.code === 'unrecognized_keys' ? (i.keys ?? []) : [])) : [];
  if (unknown.length > 0)
    return new ApiError('bad-request', `unknown query parameter ${unknown.map((k) => JSON.stringify(k)).join(', ')}`, {
      errors: unknown.map((k) => ({ field: `query.${k}`, message: 'unknown query parameter' })),
    });
  const where = target === 'json' ? 'body' : target;
  return new ApiError('validation-error', `the request ${where} is not valid`, {
    errors: fieldErrors(issues, target === 'json' ? undefined : target),
  });
}

/** Turns zod issues into field errors, prefixing paths (e.g. with `input`). */
export function fieldErrors(
  issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>,
  prefix?: string,
): FieldError[] {
  return issues.map((i) => {
    const parts = [...(prefix === undefined ? [] : [prefix]), ...i.path.map((p) => String(p))];
    return { field: parts.join('.') || '(body)', message: i.message };
  });
}
