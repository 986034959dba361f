/**
 * Checks real responses against openapi.yaml: the status must be documented for the operation, the
 * content type must be one the spec lists for it, documented required headers must be present, and a
 * JSON body must validate against the response schema (ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses).
 * test/support/service.ts runs every response fetched through `api()` through this.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

type Obj = Record<string, unknown>;

const SPEC_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'openapi.yaml');
/** The $id the whole document is registered under, so its `#/components/...` references resolve. */
const SPEC_ID = 'https://longhaul.dev/openapi.yaml';
const STALE_HINT = 'if the code changed on purpose, run `npm run openapi`';

function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}

/** A JSON pointer to `parts`, written as a URI fragment. */
function pointer(parts: string[]): string {
  return '#' + parts.map((p) => '/' + encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1'))).join('');
}

function isJson(contentType: string): boolean {
  return /^application\/(?:[\w.+-]+\+)?json$/i.test(contentType);
}

interface Operation {
  template: string;
  method: string;
  responses: Obj;
}

export class Spec {
  readonly doc: Obj;
  readonly #ajv: Ajv2020;
  readonly #routes: Array<{ re: RegExp; template: string; item: Obj }>;
  readonly #validators = new Map<string, ValidateFunction>();

  constructor(doc: Obj) {
    this.doc = doc;
    // strict: false because the document holds more than schemas (and schemas carry `example`).
    this.#ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(this.#ajv);
    this.#ajv.addSchema({ ...doc, $id: SPEC_ID }, undefined, undefined, false);
    // Literal paths before templated ones, so /v1/jobs/export would win over /v1/jobs/{id}.
    this.#routes = Object.entries(obj(doc.paths))
      .map(([template, item]) => ({
        template,
        item: obj(item),
        params: (template.match(/\{/g) ?? []).length,
        re: new RegExp(
          '^' +
            template
              .split(/\{[^}]+\}/)
              .map((s) => s.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
              .join('[^/]+') +
            '$',
        ),
      }))
      .sort((a, b) => a.params - b.params);
  }

  /** The documented operation for a concrete request path (query string ignored), if any. */
  operation(method: string, urlPath: string): Operation | undefined {
    const p = urlPath.split('?')[0] ?? urlPath;
    const m = method.toLowerCase();
    for (const r of this.#routes) {
      const op = r.item[m];
      if (op !== undefined && r.re.test(p))
        return { template: r.template, method: m, responses: obj(obj(op).responses) };
    }
    return undefined;
  }

  /** What is wrong with this response according to the spec; empty when it conforms. */
  problems(op: Operation, res: { status: number; headers: Headers }, body: string | undefined): string[] {
    const where = `${op.method.toUpperCase()} ${op.template} → ${res.status}`;
    const status = String(res.status);
    const documented = [status, `${status.charAt(0)}XX`, 'default'].find((k) => op.responses[k] !== undefined);
    if (documented === undefined)
      return [`${where}: status ${res.status} is not documented (${Object.keys(op.responses).join(', ')})`];
    const response = this.#deref(op.responses[documented]);
    const out: string[] = [];
    for (const [name, h] of Object.entries(obj(response.headers))) {
      if (this.#deref(h).required === true && !res.headers.has(name))
        out.push(`${where}: required header ${name} is missing`);
    }
    const content = obj(response.content);
    const contentType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    if (Object.keys(content).length === 0) return out;
    if (content[contentType] === undefined) {
      out.push(
        `${where}: content type ${JSON.stringify(contentType)} is not documented (${Object.keys(content).join(', ')})`,
      );
      return out;
    }
    if (!isJson(contentType) || body === undefined) return out;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return [...out, `${where}: the body is not JSON: ${body.slice(0, 200)}`];
    }
    const validate = this.#validator([
      'paths',
      op.template,
      op.method,
      'responses',
      documented,
      'content',
      contentType,
      'schema',
    ]);
    if (validate !== undefined && !validate(value)) {
      for (const e of validate.errors ?? [])
        out.push(`${where}: body${e.instancePath} ${e.message ?? 'is invalid'} ${JSON.stringify(e.params)}`);
    }
    return out;
  }

  /** Follows a local `$ref` (e.g. `#/components/headers/X-Request-Id`) to what it names. */
  #deref(v: unknown): Obj {
    const ref = obj(v).$ref;
    if (typeof ref !== 'string' || !ref.startsWith('#/')) return obj(v);
    let node: unknown = this.doc;
    for (const p of ref.slice(2).split('/')) node = obj(node)[p.replace(/~1/g, '/').replace(/~0/g, '~')];
    return this.#deref(node);
  }

  #validator(parts: string[]): ValidateFunction | undefined {
    const ref = SPEC_ID + pointer(parts);
    let v = this.#validators.get(ref);
    if (v === undefined) {
      let node: unknown = this.doc;
      for (const p of parts) node = obj(node)[p];
      if (node === undefined) return undefined;
      v = this.#ajv.compile({ $ref: ref });
      this.#validators.set(ref, v);
    }
    return v;
  }

  /**
   * Throws when `res` (the answer to `method url`) does not conform. Reads a JSON body from a clone, so
   * the caller can still read `res`; streams and binary bodies are checked by status and type only.
   */
  async check(method: string, url: string, res: Response): Promise<void> {
    const op = this.operation(method, new URL(url, 'http://x').pathname);
    if (op === undefined) return;
    const contentType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    const body = isJson(contentType) ? await res.clone().text() : undefined;
    const found = this.problems(op, res, body);
    if (found.length > 0)
      throw new Error(
        `the response does not match openapi.yaml (${STALE_HINT}):\n  ${found.join('\n  ')}\n  body: ${(body ?? '').slice(0, 500)}`,
      );
  }
}

let loaded: Spec | undefined;

/** openapi.yaml as committed, parsed once per test file. */
export function spec(): Spec {
  loaded ??= new Spec(obj(parse(readFileSync(SPEC_FILE, 'utf8'))));
  return loaded;
}

/** An operation that may change state (any method but GET, HEAD and OPTIONS), as openapi.yaml lists it. */
export interface StateChangingOperation {
  method: string;
  template: string;
  /** Whether the operation declares a request body, and whether it must be sent. */
  body: 'none' | 'optional' | 'required';
  /** Whether it takes the admin token rather than an API key. */
  admin: boolean;
}

/** Every state-changing operation of openapi.yaml, so tests over them cover new endpoints by themselves. */
export function stateChangingOperations(): StateChangingOperation[] {
  const out: StateChangingOperation[] = [];
  for (const [template, item] of Object.entries(obj(spec().doc.paths))) {
    for (const [method, op] of Object.entries(obj(item))) {
      if (!['post', 'put', 'patch', 'delete'].includes(method)) continue;
      const requestBody = obj(obj(op).requestBody);
      const body =
        Object.keys(requestBody).length === 0 ? 'none' : requestBody.required === true ? 'required' : 'optional';
      const admin = JSON.stringify(obj(op).security ?? []).includes('adminToken');
      out.push({ method: method.toUpperCase(), template, body, admin });
    }
  }
  return out;
}
