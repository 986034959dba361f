/** Small builders for route definitions, so every route documents its errors the same way. */
import type { z } from '@hono/zod-openapi';
import { ProblemSchema } from './schemas.ts';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request (bad JSON, header or cursor)',
  401: 'Missing or invalid credentials',
  403: 'Not allowed',
  404: "Not found (also for another tenant's resources)",
  409: "Conflict with the resource's state, or an Idempotency-Key still in flight",
  413: 'Body too large',
  415: 'Body is not application/json',
  422: 'Validation failed, or the JSON is past a limit (`json-too-complex`); `errors` names the fields',
  429: "Past one of the tenant's limits (`rate-limited`, `too-many-pending-jobs`); nothing was written. See Retry-After and RateLimit",
  503: 'Not available on this process, or the database cannot be reached at the moment (then with Retry-After)',
};

export function jsonContent<T extends z.ZodType>(schema: T) {
  return { content: { 'application/json': { schema } } };
}

interface HeaderObject {
  description: string;
  required: boolean;
  schema: { type: 'string' | 'integer' };
}

/** Headers that come with some errors: the auth challenge, and when to retry a request still in flight. */
const ERROR_HEADERS: Record<number, Record<string, HeaderObject>> = {
  401: {
    'WWW-Authenticate': {
      description: 'The Bearer challenge (RFC 6750), when a bearer credential was expected',
      required: false,
      schema: { type: 'string' },
    },
  },
  409: {
    'Retry-After': {
      description: 'Seconds to wait before retrying, when an Idempotency-Key is still in flight',
      required: false,
      schema: { type: 'integer' },
    },
  },
  429: {
    'Retry-After': { description: 'Seconds to wait before retrying', required: true, schema: { type: 'integer' } },
    'RateLimit-Policy': {
      description:
        'The tenant\'s limits (draft-ietf-httpapi-ratelimit-headers): `"rate";q=<jobs>;w=<seconds>` and `"pending";q=<jobs>;qu="concurrent-requests"`',
      required: true,
      schema: { type: 'string' },
    },
    RateLimit: {
      description: 'Per limit, what remains and the seconds until it is whole: `"rate";r=<jobs>;t=<seconds>`',
      required: true,
      schema: { type: 'string' },
    },
  },
  503: {
    'Retry-After': {
      description: 'Seconds to wait before retrying, when the database cannot be reached',
      required: false,
      schema: { type: 'integer' },
    },
  },
};

/** Every authenticated route (401) reads the database, so it answers 503 too while the database cannot be reached. */
export function errorResponses(...listed: number[]) {
  const statuses = listed.includes(401) && !listed.includes(503) ? [...listed, 503] : listed;
  const out: Record<
    number,
    {
      description: string;
      headers?: Record<string, HeaderObject>;
      content: { 'application/problem+json': { schema: typeof ProblemSchema } };
    }
  > = {};
  for (const s of statuses) {
    out[s] = {
      description: ERROR_DESCRIPTIONS[s] ?? 'Error',
      ...(ERROR_HEADERS[s] === undefined ? {} : { headers: ERROR_HEADERS[s] }),
      content: { 'application/problem+json': { schema: ProblemSchema } },
    };
  }
  return out;
}
