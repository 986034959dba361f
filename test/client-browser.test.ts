/**
 * @longhaul/client in a browser: the packed package is installed into an empty project, bundled as a
 * partner's web app would be (vite, for the browser), served from a page on another origin, and run in
 * real Chromium: it submits a job, watches its events and waits for it to COMPLETED against a real
 * service that allows that origin (LONGHAUL_CORS_ORIGINS). A service that does not (the default) is
 * refused by the browser.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { launchChromium } from './support/browser.ts';
import { packed, tempProject } from './support/packages.ts';
import { freePort } from './support/process.ts';
import { startTestService, type TestService } from './support/service.ts';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>partner</title></head><body>
<script type="module">
import { Longhaul } from './longhaul-client.js';
window.runJob = async (url, apiKey) => {
  const lh = new Longhaul({ url, apiKey });
  const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 5, chunk_ms: 20 } });
  const types = [];
  for await (const m of lh.jobs.watch(job.id)) types.push(m.type);
  const done = await lh.jobs.wait(job.id, { timeout: 30000 });
  return { id: job.id, status: done.status, types };
};
window.ready = true;
</script></body></html>`;

let project: Awaited<ReturnType<typeof tempProject>>;
let site: Server;
let origin: string;
let t: TestService;
let closed: TestService;
let browser: Browser;

beforeAll(async () => {
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  const tarball = await packed('clients/typescript');
  [project, t, closed, browser] = await Promise.all([
    tempProject('browser-partner', { 'index.html': PAGE }, [tarball]),
    startTestService({ roles: ['api', 'worker'], env: { LONGHAUL_CORS_ORIGINS: origin } }),
    startTestService(),
    launchChromium(),
  ]);
  // The installed package's built JavaScript, bundled for the browser with its dependencies.
  await build({
    root: project.dir,
    configFile: false,
    logLevel: 'silent',
    build: {
      outDir: path.join(project.dir, 'site'),
      emptyOutDir: true,
      minify: false,
      lib: {
        entry: path.join(project.dir, 'node_modules', '@longhaul', 'client', 'dist', 'index.js'),
        formats: ['es'],
        fileName: () => 'longhaul-client.js',
      },
    },
  });
  const files: Record<string, [string, string]> = {
    '/': [path.join(project.dir, 'index.html'), 'text/html'],
    '/longhaul-client.js': [path.join(project.dir, 'site', 'longhaul-client.js'), 'text/javascript'],
  };
  site = createServer((req, res) => {
    const file = files[req.url ?? ''];
    if (file === undefined) return void res.writeHead(404).end();
    void readFile(file[0]).then((body) => res.writeHead(200, { 'content-type': file[1] }).end(body));
  });
  await new Promise<void>((resolve) => site.listen(port, '127.0.0.1', resolve));
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => site?.close(r));
  await t?.stop();
  await closed?.stop();
  await project?.remove();
});

it('submits, watches and waits for a job from a page on an allowed origin', async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${origin}/`);
    await page.waitForFunction('window.ready === true');
    const out = await page.evaluate<{ id: string; status: string; types: string[] }>(
      `window.runJob(${JSON.stringify(t.url)}, ${JSON.stringify(t.tenant.api_key)})`,
    );
    expect(out.status).toBe('COMPLETED');
    expect(out.types[0]).toBe('snapshot');
    expect(out.types.at(-1)).toBe('status');
    const { rows } = await t.service.pool.query<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [out.id]);
    expect(rows[0]?.status).toBe('COMPLETED');
  } finally {
    await page.close();
  }
}, 90_000);

it('is refused by the browser when the service does not allow the origin (the default)', async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${origin}/`);
    await page.waitForFunction('window.ready === true');
    const err = await page.evaluate(
      `window.runJob(${JSON.stringify(closed.url)}, ${JSON.stringify(closed.tenant.api_key)}).then(() => 'submitted', (e) => String(e))`,
    );
    expect(err).toMatch(/fetch/i);
    const { rows } = await closed.service.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
    expect(rows[0]?.n).toBe(0);
  } finally {
    await page.close();
  }
}, 90_000);
