/** Renders the OpenAPI document as one self-contained HTML reference page (served at /docs). */

type Obj = Record<string, unknown>;
const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null ? (v as Obj) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function schemaBlock(schema: unknown): string {
  return `<pre>${esc(JSON.stringify(schema, null, 2))}</pre>`;
}

/** A link to a named schema (`$ref`, or an array of one), else the schema itself. */
function schemaLink(schema: unknown): string {
  const ref = (s: unknown) => /^#\/components\/schemas\/(.+)$/.exec(str(obj(s).$ref))?.[1];
  const name = ref(schema);
  if (name !== undefined) return `<a href="#schema-${esc(name)}"><code>${esc(name)}</code></a>`;
  const item = obj(schema).type === 'array' ? ref(obj(schema).items) : undefined;
  if (item !== undefined) return `<a href="#schema-${esc(item)}"><code>${esc(item)}[]</code></a>`;
  return schemaBlock(schema);
}

function content(c: unknown): string {
  return Object.entries(obj(c))
    .map(
      ([type, media]) =>
        ` <code>${esc(type)}</code> ${obj(media).schema === undefined ? '' : schemaLink(obj(media).schema)}`,
    )
    .join(';');
}

/** Follows a local `$ref` (e.g. to `#/components/responses/…`) within `doc`. */
function deref(doc: Obj, v: unknown): Obj {
  const ref = str(obj(v).$ref);
  if (!ref.startsWith('#/')) return obj(v);
  return obj(
    ref
      .slice(2)
      .split('/')
      .reduce<unknown>((node, key) => obj(node)[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc),
  );
}

function operation(doc: Obj, path: string, method: string, op: Obj): string {
  const params = Array.isArray(op.parameters) ? (op.parameters as Obj[]) : [];
  const body = obj(op.requestBody).content;
  const responses = Object.entries(obj(op.responses)).map(([code, r]) => [code, deref(doc, r)] as const);
  const security = Array.isArray(op.security) ? (op.security as Obj[]).flatMap((s) => Object.keys(s)) : [];
  return `<section class="op" id="${esc(method + path)}">
  <h3><span class="m ${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code> — ${esc(str(op.summary))}</h3>
  ${op.description === undefined ? '' : `<p>${esc(str(op.description))}</p>`}
  ${security.length === 0 ? '' : `<p>Authorization: ${security.map((s) => `<a href="#auth-${esc(s)}"><code>${esc(s)}</code></a>`).join(' or ')}</p>`}
  ${params.length === 0 ? '' : `<h4>Parameters</h4><ul>${params.map((p) => `<li><code>${esc(str(p.name))}</code> (${esc(str(p.in))})${p.required === true ? ' required' : ''} ${esc(str(p.description))}</li>`).join('')}</ul>`}
  ${body === undefined ? '' : `<h4>Request body</h4><p>${content(body)}</p>`}
  <h4>Responses</h4><ul>${responses.map(([code, r]) => `<li><b>${esc(code)}</b> ${esc(str(r.description))}${content(r.content)}</li>`).join('')}</ul>
</section>`;
}

export function renderReference(doc: Obj): string {
  const info = obj(doc.info);
  const ops: string[] = [];
  const toc: string[] = [];
  for (const [path, item] of Object.entries(obj(doc.paths))) {
    for (const m of METHODS) {
      const op = obj(item)[m];
      if (op === undefined) continue;
      toc.push(`<li><a href="#${esc(m + path)}">${m.toUpperCase()} ${esc(path)}</a></li>`);
      ops.push(operation(doc, path, m, obj(op)));
    }
  }
  const hooks = Object.entries(obj(doc.webhooks)).map(([name, item]) =>
    operation(doc, name, 'post', obj(obj(item).post)),
  );
  const auth = Object.entries(obj(obj(doc.components).securitySchemes)).map(
    ([name, scheme]) =>
      `<li id="auth-${esc(name)}"><code>${esc(name)}</code>: ${esc(str(obj(scheme).scheme))} — ${esc(str(obj(scheme).description))}</li>`,
  );
  const schemas = Object.entries(obj(obj(doc.components).schemas)).map(
    ([name, s]) => `<section id="schema-${esc(name)}"><h3>${esc(name)}</h3>${schemaBlock(s)}</section>`,
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(str(info.title))} API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
code,pre{font-family:ui-monospace,monospace}pre{background:#f4f5f7;padding:.75rem;overflow:auto;border-radius:6px;font-size:13px}
.m{display:inline-block;min-width:4rem;text-align:center;border-radius:4px;color:#fff;font-size:13px;padding:0 .3rem}
.get{background:#2f7d32}.post{background:#1f5fbf}.delete{background:#b3261e}.put,.patch{background:#8a5a00}
.op{border-top:1px solid #dde1e6;padding-top:.5rem}
</style></head><body>
<h1>${esc(str(info.title))} <small>${esc(str(info.version))}</small></h1>
<p>${esc(str(info.description))}</p>
<p>The machine-readable spec: <a href="/openapi.yaml">/openapi.yaml</a>.</p>
<h2>Authorization</h2><ul>${auth.join('')}</ul>
<h2>Endpoints</h2><ul>${toc.join('')}</ul>
${ops.join('\n')}
${hooks.length === 0 ? '' : `<h2>Webhooks</h2>${hooks.join('\n')}`}
<h2>Schemas</h2>${schemas.join('\n')}
</body></html>`;
}
