/**
 * openapi.yaml cannot drift: it must equal the document generated from the routes, the client package's
 * types (clients/typescript/src/openapi.ts) must equal what openapi-typescript makes of it, the server must serve it and route every path it
 * names, and /docs must show all of it.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generateClientTypes, generateSpec, ROOT, SPEC_FILE, TYPES_FILE } from '../scripts/openapi.ts';
import { startTestService, type TestService } from './support/service.ts';
import { spec } from './support/spec.ts';

type Obj = Record<string, unknown>;
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ roles: ['api'] });
});
afterAll(async () => t.stop());

function operations(doc: Obj): Array<{ path: string; method: string; op: Obj }> {
  return Object.entries(doc.paths as Obj).flatMap(([path, item]) =>
    METHODS.filter((m) => (item as Obj)[m] !== undefined).map((method) => ({
      path,
      method,
      op: (item as Obj)[method] as Obj,
    })),
  );
}

describe('drift', () => {
  it('openapi.yaml is the document generated from the code', async () => {
    const committed = await readFile(SPEC_FILE, 'utf8');
    // toBe shows the differing lines; the message says how to fix it.
    expect(committed, 'openapi.yaml is stale: run `npm run openapi` and commit the result').toBe(await generateSpec());
  });

  it("the client package's types are what openapi-typescript makes of openapi.yaml", async () => {
    const committed = await readFile(TYPES_FILE, 'utf8');
    expect(committed, 'the client types are stale: run `npm run openapi` and commit the result').toBe(
      await generateClientTypes(await readFile(SPEC_FILE, 'utf8')),
    );
  });
});

describe('the document', () => {
  const doc = spec().doc;

  it('is OpenAPI 3.1 with bearer and admin security schemes and a webhooks section', () => {
    expect(doc.openapi).toBe('3.1.0');
    const schemes = (doc.components as Obj).securitySchemes as Obj;
    expect(schemes.apiKey).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.adminToken).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(typeof doc.webhooks).toBe('object');
  });

  it('names the credentials every /v1 operation takes, and its 401', () => {
    for (const { path, method, op } of operations(doc).filter((o) => o.path.startsWith('/v1/'))) {
      const scheme = path.startsWith('/v1/admin/') ? 'adminToken' : 'apiKey';
      expect(op.security, `${method} ${path}`).toContainEqual({ [scheme]: [] });
      expect((op.responses as Obj)['401'], `${method} ${path} documents 401`).toBeDefined();
    }
  });

  it('documents every error, and the 500 any request may meet, as a problem+json Problem', () => {
    const internal = ((doc.components as Obj).responses as Obj).InternalError as Obj;
    expect(internal.content).toEqual({
      'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
    });
    for (const { path, method, op } of operations(doc)) {
      const responses = op.responses as Obj;
      expect(responses['500'], `${method} ${path}`).toEqual({ $ref: '#/components/responses/InternalError' });
      for (const [status, response] of Object.entries(responses)) {
        if (Number(status) < 400 || status === '500' || (path === '/readyz' && status === '503')) continue;
        expect(
          Object.keys(((response as Obj).content as Obj | undefined) ?? {}),
          `${method} ${path} ${status}`,
        ).toEqual(['application/problem+json']);
      }
    }
  });
});

describe('served', () => {
  it('serves openapi.yaml as committed', async () => {
    const res = await fetch(`${t.url}/openapi.yaml`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/yaml');
    expect(parse(await res.text())).toEqual(spec().doc);
  });

  it('routes every path the document names', async () => {
    for (const { path, method } of operations(spec().doc)) {
      const url = path.replace(/\{[^}]+\}/g, '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60');
      const res = await t.api(url, { method: method.toUpperCase(), ...(method === 'post' ? { json: {} } : {}) });
      const text = await res.text();
      expect(text, `${method} ${path}`).not.toContain('no route for');
    }
  });

  it('renders every operation, webhook and schema on /docs', async () => {
    const res = await fetch(`${t.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const html = await res.text();
    for (const { path, method } of operations(spec().doc))
      expect(html, `${method} ${path}`).toContain(`id="${method}${path}"`);
    for (const name of Object.keys((spec().doc.webhooks as Obj | undefined) ?? {}))
      expect(html, `webhook ${name}`).toContain(name);
    for (const name of Object.keys(((spec().doc.components as Obj).schemas as Obj | undefined) ?? {})) {
      expect(html, `schema ${name}`).toContain(`id="schema-${name}"`);
    }
  });
});

describe('response validation', () => {
  const headers = { 'content-type': 'application/json', 'x-request-id': 'r1' };
  const check = (method: string, path: string, res: Response) => spec().check(method, path, res);

  it('accepts a conforming response and ignores paths the spec does not name', async () => {
    await check('GET', '/healthz', new Response('{"status":"ok"}', { status: 200, headers }));
    await check('GET', '/nowhere', new Response('anything', { status: 418 }));
  });

  it('rejects a body that does not match the schema', async () => {
    const res = new Response(JSON.stringify({ id: 'x' }), { status: 200, headers });
    await expect(check('GET', '/v1/jobs/abc', res)).rejects.toThrow(
      /GET \/v1\/jobs\/\{id\} → 200: body must have required property 'type'/,
    );
  });

  it('rejects an undocumented status, content type or missing required header', async () => {
    await expect(check('GET', '/v1/jobs/abc', new Response('{}', { status: 418, headers }))).rejects.toThrow(
      /status 418 is not documented/,
    );
    await expect(
      check('GET', '/healthz', new Response('ok', { status: 200, headers: { 'x-request-id': 'r' } })),
    ).rejects.toThrow(/content type/);
    await expect(
      check(
        'GET',
        '/healthz',
        new Response('{"status":"ok"}', { status: 200, headers: { 'content-type': 'application/json' } }),
      ),
    ).rejects.toThrow(/required header X-Request-Id/);
  });
});

describe('a contract any generator can use', () => {
  it("passes Redocly's recommended rules (less those redocly.yaml turns off, with its reasons)", async () => {
    const cli = path.join(ROOT, 'node_modules', '@redocly', 'cli', 'bin', 'cli.js');
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [cli, 'lint', SPEC_FILE, '--format=summary'],
      {
        cwd: ROOT,
      },
    );
    expect(`${stdout}${stderr}`).toContain('Woohoo! Your API description is valid.');
    expect(`${stdout}${stderr}`).not.toMatch(/warning|error/i);
  });

  const doc = spec().doc;
  const schemas = () => (doc.components as Obj).schemas as Obj;

  it('names every operation with a unique verb+noun operationId, under a declared tag', () => {
    const ids = operations(doc).map(({ path, method, op }) => {
      expect(op.operationId, `${method} ${path}`).toMatch(
        /^(get|list|create|update|delete|enable|pause|resume|cancel|retry|replay|redeliver|rotate|revoke|stream|download)[A-Z][A-Za-z]+$/,
      );
      return op.operationId;
    });
    expect(new Set(ids).size).toBe(ids.length);
    const declared = (doc.tags as Array<{ name: string }>).map((t) => t.name);
    for (const { path, method, op } of operations(doc))
      for (const tag of op.tags as string[]) expect(declared, `${method} ${path} tag ${tag}`).toContain(tag);
  });

  it("describes each job type's input: CreateJob is a union discriminated by type", () => {
    const createJob = schemas().CreateJob as Obj;
    expect(createJob.discriminator).toEqual({
      propertyName: 'type',
      mapping: {
        report: '#/components/schemas/CreateJob_report',
        synthetic: '#/components/schemas/CreateJob_synthetic',
      },
    });
    const synthetic = schemas().CreateJob_synthetic as { properties: Record<string, Obj>; required: string[] };
    expect(synthetic.properties.type).toEqual({ type: 'string', const: 'synthetic' });
    expect(synthetic.properties.input?.required).toEqual(['chunks', 'chunk_ms']);
    expect(synthetic.required).toEqual(['type', 'input']);
  });

  it('types the event stream, the JWK, and query parameters as never null', () => {
    const events = (((doc.paths as Obj)['/v1/jobs/{id}/events'] as Obj).get as Obj).responses as Obj;
    expect(((events['200'] as Obj).content as Obj)['text/event-stream']).toEqual({
      schema: { $ref: '#/components/schemas/StreamMessage' },
    });
    expect(Object.keys((schemas().Jwk as Obj).properties as Obj).sort()).toEqual([
      'alg',
      'crv',
      'kid',
      'kty',
      'use',
      'x',
    ]);
    for (const { path, method, op } of operations(doc))
      for (const p of (op.parameters as Obj[] | undefined) ?? [])
        expect(String(JSON.stringify((p.schema as Obj).type)), `${method} ${path} ${String(p.name)}`).not.toContain(
          'null',
        );
  });

  it('answers a wrong method on a known path with 405 and Allow, and serves SSE to Accept: */*', async () => {
    const res = await fetch(`${t.url}/v1/jobs`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${t.tenant.api_key}` },
    });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, POST');
    expect(((await res.json()) as { type: string }).type).toBe('https://longhaul.dev/problems/method-not-allowed');
    expect((await fetch(`${t.url}/nowhere`, { method: 'DELETE' })).status).toBe(404);

    const job = (await (
      await t.api('/v1/jobs', { method: 'POST', json: { type: 'synthetic', input: { chunks: 0, chunk_ms: 0 } } })
    ).json()) as { id: string };
    const ac = new AbortController();
    const stream = await fetch(`${t.url}/v1/jobs/${job.id}/events`, {
      headers: { authorization: `Bearer ${t.tenant.api_key}`, accept: '*/*' },
      signal: ac.signal,
    });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    ac.abort();
  });
});
