/** /openapi.yaml and /docs: the spec, and a readable reference page rendered from it (no external assets). */
import type { App, AppDeps } from '../context.ts';
import { openApiDocument, openApiYaml } from '../openapi.ts';
import { renderReference } from '../reference-page.ts';

/** The document names the job types of `registry`, plugins included, so a client generated from it knows their inputs. */
export function registerDocsRoutes(app: App, registry: AppDeps['registry']): void {
  // Plain routes (not JSON), listed in the spec so that it names every endpoint.
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/openapi.yaml',
    operationId: 'getOpenApiDocument',
    tags: ['operations'],
    summary: 'This API description (OpenAPI 3.1, YAML)',
    responses: {
      200: { description: 'The document', content: { 'application/yaml': { schema: { type: 'string' } } } },
    },
  });
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/docs',
    operationId: 'getReferencePage',
    tags: ['operations'],
    summary: 'A readable reference page rendered from this description',
    responses: { 200: { description: 'An HTML page', content: { 'text/html': { schema: { type: 'string' } } } } },
  });
  let yaml: string | undefined;
  let html: string | undefined;
  app.get('/openapi.yaml', (c) => {
    yaml ??= openApiYaml(app, registry.all());
    return c.body(yaml, 200, { 'Content-Type': 'application/yaml; charset=utf-8' });
  });
  app.get('/docs', (c) => {
    html ??= renderReference(openApiDocument(app, registry.all()));
    return c.html(html);
  });
}
