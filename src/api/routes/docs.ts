/** /openapi.yaml and /docs: the spec, and a readable reference page rendered from it (no external assets). */
import type { App } from '../context.ts';
import { openApiDocument, openApiYaml } from '../openapi.ts';
import { renderReference } from '../reference-page.ts';

export function registerDocsRoutes(app: App): void {
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
