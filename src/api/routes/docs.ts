/** /openapi.yaml and /docs: the spec, and a readable reference page rendered from it (no external assets). */
import type { App } from '../context.ts';
import { openApiDocument, openApiYaml } from '../openapi.ts';
import { renderReference } from '../reference-page.ts';

export function registerDocsRoutes(app: App): void {
  // Plain routes (not JSON), listed in the spec so that it names every endpoint.
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/openapi.yaml',
    tags: ['operations'],
    summary: 'This API description (OpenAPI 3.1, YAML)',
    responses: {
      200: { description: 'The document', content: { 'application/yaml': { schema: { type: 'string' } } } },
    },
  });
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/docs',
    tags: ['operations'],
    summary: 'A readable reference page rendered from this description',
    responses: { 200: { description: 'An HTML page', content: { 'text/html': { schema: { type: 'string' } } } } },
  });
  let yaml: string | undefined;
  let html: string | undefined;
  app.get('/openapi.yaml', (c) => {
    yaml ??= openApiYaml(app);
    return c.body(yaml, 200, { 'Content-Type': 'application/yaml; charset=utf-8' });
  });
  app.get('/docs', (c) => {
    html ??= renderReference(openApiDocument(app));
    return c.html(html);
  });
}
