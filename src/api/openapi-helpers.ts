/** Small builders for route definitions, so every route documents its errors the same way. */
import type { z } from '@hono/zod-openapi';
import { ProblemSchema } from './schemas.ts';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request (bad JSON, header or cursor)',
  401: 'Missing or invalid credentials',
  403: 'Not allowed',
  404: 'Not found (also for another tenant\'s resources)',
  409: 'Conflict with the resource\'s state, or an Idempotency-Key still in flight',
  413: 'Body too large',
  415: 'Body is not application/json',
  422: 'Validation failed; `errors` names the fields',
  503: 'Not ready',
};

export function jsonContent<T extends z.ZodType>(schema: T) {
  return { content: { 'application/json': { schema } } };
}

export function errorResponses(...statuses: number[]) {
  const out: Record<number, { description: string; content: { 'application/problem+json': { schema: typeof ProblemSchema } } }> = {};
  for (const s of statuses) out[s] = { description: ERROR_DESCRIPTIONS[s] ?? 'Error', content: { 'application/problem+json': { schema: ProblemSchema } } };
  return out;
}
