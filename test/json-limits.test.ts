/**
 * What a JSON body may hold (docs/requests.md): nesting depth, members of one object or array,
 * length of a string or key. At and below each limit a body is taken; past it, in `metadata` or
 * `input`, the answer is 422 `json-too-complex` naming the place, alike through the submit lane and
 * the Hono route, and nothing is created. Bodies far past the limits (thousands deep, hundreds of
 * thousands of members), which once overflowed the stack or held the event loop, are refused on every
 * state-changing endpoint with the default limits.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type AppHandle } from '../src/api/app.ts';
import { ApiError } from '../src/api/errors.ts';
import { parseJson } from '../src/api/json-body.ts';
import { loadConfig } from '../src/config.ts';
import { JobSubmitter } from '../src/jobs/submit.ts';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.ts';
import { stateChangingOperations } from './support/spec.ts';

const DEPTH = 6;
const MEMBERS = 5;
const STRING = 40;
const OPAQUE = path.join(import.meta.dirname, 'fixtures', 'opaque-job-type.ts');

let t: TestService;
let hono: AppHandle;
beforeAll(async () => {
  t = await startTestService({
    env: {
      LONGHAUL_JSON_MAX_DEPTH: String(DEPTH),
      LONGHAUL_JSON_MAX_MEMBERS: String(MEMBERS),
      LONGHAUL_JSON_MAX_STRING_LENGTH: String(STRING),
      LONGHAUL_JOB_TYPES: OPAQUE,
    },
  });
  const { config, pool, boss, log, metrics, registry } = t.service;
  hono = createApp({ config, pool, boss, log, metrics, registry, submitter: new JobSubmitter(pool, boss) });
});
afterAll(async () => t.stop());

async function jobCount(): Promise<number> {
  const { rows } = await t.service.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
  return rows[0]?.n ?? -1;
}

/** `levels` arrays nested inside one another around a 0 (none: the 0 itself). */
const nested = (levels: number): unknown => (levels === 0 ? 0 : [nested(levels - 1)]);
const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
const items = (n: number) => Array.from({ length: n }, (_, i) => i);

// The body is depth 1 and `metadata` or `input` depth 2, so a value there may nest DEPTH - 2 more levels.
const ROOM = DEPTH - 2;
const bodyWith = (where: 'metadata' | 'input', value: unknown) =>
  JSON.stringify(
    where === 'metadata'
      ? { type: 'opaque', input: { payload: 0 }, metadata: { v: value } }
      : { type: 'opaque', input: { payload: value } },
  );

interface Answer {
  status: number;
  type?: string;
  errors?: Array<{ field: string; message: string }>;
}

/** The same body through the lane (real HTTP) and through Hono (app.request): both answers. */
async function submit(body: string): Promise<{ lane: Answer; hono: Answer }> {
  const headers = { authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/json' };
  const viaLane = await fetch(`${t.url}/v1/jobs`, { method: 'POST', headers, body });
  const viaHono = await hono.app.request('/v1/jobs', {
    method: 'POST',
    headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
    body,
  });
  const read = async (res: Response): Promise<Answer> => {
    const json = (await res.json()) as { type?: string; errors?: Answer['errors'] };
    return res.status === 202 ? { status: 202 } : { status: res.status, type: json.type, errors: json.errors };
  };
  return { lane: await read(viaLane), hono: await read(viaHono) };
}

describe.each(['metadata', 'input'] as const)('limits in %s', (where) => {
  const field = where === 'metadata' ? 'metadata.v' : 'input.payload';
  it.each<[string, unknown, unknown, unknown, string]>([
    ['nesting depth', nested(ROOM - 1), nested(ROOM), nested(ROOM + 1), `nested more than ${DEPTH} levels deep`],
    ['keys in one object', keys(MEMBERS - 1), keys(MEMBERS), keys(MEMBERS + 1), `more than ${MEMBERS} keys`],
    ['items in one array', items(MEMBERS - 1), items(MEMBERS), items(MEMBERS + 1), `more than ${MEMBERS} items`],
    [
      'string length',
      'x'.repeat(STRING - 1),
      'x'.repeat(STRING),
      'x'.repeat(STRING + 1),
      `the string is ${STRING + 1} characters; the limit is ${STRING}`,
    ],
    [
      'string length counted unescaped',
      '\n'.repeat(STRING - 1),
      '\u00e9'.repeat(STRING),
      '\u00e9'.repeat(STRING + 1),
      `the string is ${STRING + 1} characters; the limit is ${STRING}`,
    ],
    [
      'key length',
      { ['k'.repeat(STRING - 1)]: 1 },
      { ['k'.repeat(STRING)]: 1 },
      { ['k'.repeat(STRING + 1)]: 1 },
      `a key is ${STRING + 1} characters; the limit is ${STRING}`,
    ],
  ])(
    '%s: taken below and at the limit, 422 past it on both doors, nothing created',
    async (_n, below, at, past, message) => {
      for (const value of [below, at]) {
        const { lane, hono: viaHono } = await submit(bodyWith(where, value));
        expect(lane).toEqual({ status: 202 });
        expect(viaHono).toEqual(lane);
      }
      const before = await jobCount();
      const { lane, hono: viaHono } = await submit(bodyWith(where, past));
      expect(lane.status).toBe(422);
      expect(lane.type).toBe('https://longhaul.dev/problems/json-too-complex');
      expect(lane.errors?.[0]?.message).toBe(message);
      expect(lane.errors?.[0]?.field.startsWith(field)).toBe(true);
      expect(viaHono).toEqual(lane);
      expect(await jobCount()).toBe(before);
    },
  );
});

describe('a body far past the limits', () => {
  const defaults = loadConfig({}).json;
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const wide = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(',')}}`;

  it.each([
    ['10,000 levels deep', deep(10_000)],
    ['500,000 levels deep (a 1 MiB body)', deep(500_000)],
    ['an object of 100,000 keys', wide(100_000)],
    ['an array of 300,000 items', `[${'0,'.repeat(299_999)}0]`],
    ['a 1 MiB string', `"${'x'.repeat(1 << 20)}"`],
  ])('%s is refused under the default limits before JSON.parse', (_name, text) => {
    let caught: unknown;
    try {
      parseJson(text, defaults);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ApiError);
    expect((caught as ApiError).code).toBe('json-too-complex');
  });

  it('is answered 422 json-too-complex by every state-changing endpoint, and changes nothing', async () => {
    const body = deep(10_000);
    const before = await jobCount();
    const ops = stateChangingOperations();
    expect(ops.length).toBeGreaterThan(5);
    for (const op of ops) {
      const url = t.url + op.template.replace(/\{[^}]+\}/g, randomUUID());
      const res = await fetch(url, {
        method: op.method,
        headers: {
          authorization: `Bearer ${op.admin ? ADMIN_TOKEN : t.tenant.api_key}`,
          'content-type': 'application/json',
        },
        body,
      });
      const problem = (await res.json()) as { type: string };
      expect([op.method, op.template, res.status, problem.type]).toEqual([
        op.method,
        op.template,
        422,
        'https://longhaul.dev/problems/json-too-complex',
      ]);
    }
    expect(await jobCount()).toBe(before);
  });
});
