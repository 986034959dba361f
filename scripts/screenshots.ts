/**
 * `npm run screenshots`: a PNG of each console page in docs/console/, 1,280 px wide, from a real
 * longhaul (API, worker and dispatcher) on a temporary embedded Postgres, with jobs in every state, a
 * running job whose bar moves, a dead job, a dead delivery and a disabled endpoint, shown in the
 * npm-shipped headless Chromium the browser tests use.
 */
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.ts';
import { createTemplateDatabase, databaseUrl, scratchServer } from '../test/support/scratch.ts';
import { createLogger } from '../src/observability/logger.ts';
import { startService } from '../src/service.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { launchChromium } from '../test/support/browser.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'docs', 'console');
const ADMIN_TOKEN = 'screenshots-admin-token-0123456789';
const VIEWPORT = { width: 1280, height: 800 };

async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`screenshots: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A webhook receiver: /ok answers 200, /down 503 (its deliveries die), /gone 410 (disables the endpoint). */
async function receiver(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = req.url === '/gone' ? 410 : req.url === '/down' ? 503 : 200;
      res.writeHead(status).end(status === 200 ? 'ok' : 'no');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function main(): Promise<void> {
  const server = await scratchServer(undefined, 57000 + (process.pid % 2000), 'longhaul-screenshots-');
  const rx = await receiver();
  const browser = await launchChromium().catch(async (err: unknown) => {
    await Promise.all([rx.close(), server.stop()]);
    throw err;
  });
  try {
    await createTemplateDatabase(server.url, 'longhaul_screenshots');
    const config = loadConfig({
      DATABASE_URL: databaseUrl(server.url, 'longhaul_screenshots'),
      PORT: '0',
      HOST: '127.0.0.1',
      LONGHAUL_LOG_LEVEL: 'silent',
      LONGHAUL_ADMIN_TOKEN: ADMIN_TOKEN,
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      // Two slots: two jobs run with bars while the rest wait.
      LONGHAUL_WORKER_CONCURRENCY: '2',
      LONGHAUL_WEBHOOK_SCHEDULE_SECONDS: '0.1,0.1',
    });
    const service = await startService({ config, roles: ['api', 'worker'], log: createLogger('silent') });
    try {
      const url = service.url ?? '';
      const acme = await createTenant(service.pool, 'acme-logistics');
      await createTenant(service.pool, 'northwind-traders');
      const submit = async (input: unknown, extra: Record<string, unknown> = {}) => {
        const res = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${acme.api_key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'synthetic', input, ...extra }),
        });
        if (res.status !== 202) throw new Error(`POST /v1/jobs answered ${res.status}: ${await res.text()}`);
        return ((await res.json()) as { id: string }).id;
      };
      const statusOf = async (id: string) =>
        (await service.pool.query<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [id])).rows[0]?.status;

      const quick = (metadata: Record<string, unknown>, callback = 'ok') =>
        submit({ chunks: 5, chunk_ms: 20 }, { metadata, callback_url: `${rx.url}/${callback}` });
      const done: string[] = [];
      for (let i = 1; i <= 6; i++) done.push(await quick({ customer: `C-10${i}`, batch: i }));
      done.push(await quick({ customer: 'C-200' }, 'down'));
      done.push(await quick({ customer: 'C-300' }, 'gone'));
      const dead = await submit(
        { chunks: 4, chunk_ms: 10, fail_attempts: 1, fail_at_chunk: 2, permanent: true },
        { metadata: { customer: 'C-404' } },
      );
      for (const id of [...done, dead]) {
        await until(`job ${id} finished`, async () =>
          ['COMPLETED', 'FAILED'].includes((await statusOf(id)) ?? '') ? true : undefined,
        );
      }
      const cancelled = await submit({ chunks: 1000, chunk_ms: 100 }, { metadata: { customer: 'C-500' } });
      await fetch(`${url}/v1/jobs/${cancelled}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${acme.api_key}` },
      });
      const running = await submit({ chunks: 600, chunk_ms: 100 }, { metadata: { customer: 'C-777', region: 'eu' } });
      await submit({ chunks: 900, chunk_ms: 100 }, { metadata: { customer: 'C-778', region: 'us' } });
      for (let i = 0; i < 3; i++) await submit({ chunks: 50, chunk_ms: 100 }, { metadata: { customer: `C-90${i}` } });
      await until('the dead delivery', async () =>
        (await service.pool.query(`SELECT 1 FROM webhook_deliveries WHERE status = 'DEAD'`)).rowCount === 1
          ? true
          : undefined,
      );
      await until('the running job past 5 %', async () =>
        ((await service.pool.query<{ processed: number }>('SELECT processed FROM jobs WHERE id = $1', [running]))
          .rows[0]?.processed ?? 0) > 30
          ? true
          : undefined,
      );

      // The overview's estimates come from table statistics, which autovacuum would have gathered by now.
      await service.pool.query('ANALYZE jobs');
      await mkdir(OUT, { recursive: true });
      const page = await browser.newPage({ viewport: VIEWPORT });
      await page.goto(`${url}/console/sign-in`);
      await page.getByLabel('Admin token or API key').fill(ADMIN_TOKEN);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${url}/console`);
      const shots: Array<[string, string]> = [
        ['overview', '/console'],
        ['jobs', `/console/jobs?tenant=${acme.id}`],
        ['job', `/console/jobs/${running}`],
        ['dead-letters', `/console/dead-letters?tenant=${acme.id}`],
        ['endpoints', `/console/endpoints?tenant=${acme.id}`],
        ['workers', '/console/workers'],
        ['tenants', '/console/tenants'],
      ];
      for (const [name, to] of shots) {
        await page.goto(`${url}${to}`);
        if (name === 'jobs' || name === 'job') {
          // The bar has moved live since the page was rendered.
          const bar = page.locator(`progress[data-job="${running}"]`).first();
          const first = Number(await bar.getAttribute('aria-valuenow'));
          await until('the bar to move', async () =>
            Number(await bar.getAttribute('aria-valuenow')) > first ? true : undefined,
          );
        }
        await page.screenshot({ path: path.join(OUT, `${name}.png`) });
        process.stderr.write(`screenshots: docs/console/${name}.png\n`);
      }
    } finally {
      await service.stop();
    }
  } finally {
    await browser.close();
    await rx.close();
    await server.stop();
  }
}

await main();
