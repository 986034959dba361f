/**
 * A job type from another package: examples/job-type, depending on the packed @longhaul/sdk, is
 * installed, built and tested on its own, packed, and installed into a deployment directory; longhaul
 * started there with LONGHAUL_JOB_TYPES naming the package loads it from that node_modules and runs its
 * jobs, and the job type's PermanentError (from its own copy of the SDK) fails a job without a retry.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Longhaul } from '../clients/typescript/src/index.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { createPool } from '../src/db/pool.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { npm, packed, ROOT, tempProject } from './support/packages.ts';
import { runLonghaul, type LonghaulProcess } from './support/process.ts';

let db: TestDatabase;
let plugin: Awaited<ReturnType<typeof tempProject>>;
let deployment: Awaited<ReturnType<typeof tempProject>>;
let proc: LonghaulProcess | undefined;

beforeAll(async () => {
  const [sdk, database] = await Promise.all([packed('packages/sdk'), createTestDatabase()]);
  db = database;
  // The example as its own repository: the SDK from the tarball instead of the registry.
  plugin = await tempProject('job-type', {}, []);
  await cp(path.join(ROOT, 'examples', 'job-type'), plugin.dir, {
    recursive: true,
    filter: (src) => !/node_modules|dist/.test(path.relative(ROOT, src)),
  });
  const manifest = JSON.parse(await readFile(path.join(plugin.dir, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  manifest.dependencies['@longhaul/sdk'] = `file:${sdk}`;
  await writeFile(path.join(plugin.dir, 'package.json'), JSON.stringify(manifest, null, 2));
  await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock'], plugin.dir);
  await npm(['test'], plugin.dir);
  const [info] = JSON.parse(await npm(['pack', '--json'], plugin.dir)) as Array<{ filename: string }>;
  deployment = await tempProject('deployment', {}, [path.join(plugin.dir, info?.filename ?? '')]);
}, 300_000);

afterAll(async () => {
  proc?.kill();
  await proc?.exited;
  await deployment?.remove();
  await plugin?.remove();
  await db?.drop();
});

it('runs a job type installed from another package to COMPLETED, and fails one for good on PermanentError', async () => {
  proc = runLonghaul(
    ['start'],
    {
      DATABASE_URL: db.url,
      HOST: '127.0.0.1',
      PORT: '0',
      LONGHAUL_LOG_LEVEL: 'info',
      LONGHAUL_JOB_TYPES: 'longhaul-example-job-type',
    },
    deployment.dir,
  );
  const started = await proc.waitForLog((l) => l.msg === 'longhaul started', 60_000);
  const pool = createPool(db.url, 1, 'sdk-test');
  const tenant = await createTenant(pool, 'plugin-user').finally(() => pool.end());
  const lh = new Longhaul({ url: String(started.url), apiKey: tenant.api_key, pollIntervalMs: 100 });

  // The served document describes the plugin's input, so a client generated from it would type it.
  const served = await (await fetch(`${String(started.url)}/openapi.yaml`)).text();
  expect(served).toContain('CreateJob_prime-count');
  const job = await lh.jobs.submitUntyped({ type: 'prime-count', input: { limit: 100_000 } });
  const done = await lh.jobs.wait(job.id, { timeout: 60_000 });
  expect(done).toMatchObject({ status: 'COMPLETED', result: { primes: 9592 }, progress: { processed: 100_000 } });

  const refused = await lh.jobs.submitUntyped({ type: 'prime-count', input: { limit: 60_000_000 } });
  const failed = await lh.jobs.wait(refused.id, { timeout: 60_000 });
  expect(failed).toMatchObject({ status: 'FAILED', attempts: 1, error: { name: 'PermanentError', permanent: true } });

  const bad = await lh.jobs.submitUntyped({ type: 'prime-count', input: { limit: -1 } }).catch((e: unknown) => e);
  expect(bad).toMatchObject({ status: 422 });
});
