/** The `longhaul` command as a real process: tenants, configuration errors, concurrent migrations. */
import { readdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inject } from 'vitest';
import { USAGE } from '../src/cli.ts';
import { SQL_DIR } from '../src/db/migrate.ts';
import { hashApiKey } from '../src/tenants/repository.ts';
import { withDatabase } from './support/db-url.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { runLonghaulToEnd } from './support/process.ts';
import { startTestService } from './support/service.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => db.drop());

const env = () => ({ DATABASE_URL: db.url, LONGHAUL_LOG_LEVEL: 'warn' });

it('`tenants create NAME --json` prints the tenant once; its key works and only its hash is stored', async () => {
  const run = await runLonghaulToEnd(['tenants', 'create', 'acme', '--json'], env());
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  const tenant = JSON.parse(run.stdout) as { id: string; name: string; api_key: string; webhook_secret: string };
  expect(Object.keys(tenant).sort()).toEqual(['api_key', 'id', 'name', 'webhook_secret']);
  expect(tenant.name).toBe('acme');
  expect(tenant.api_key).toMatch(/^lh_[\w-]{43}$/);
  expect(tenant.webhook_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);

  const t = await startTestService({ db });
  try {
    const res = await t.api('/v1/jobs', { key: tenant.api_key });
    expect(res.status).toBe(200);
    const { rows } = await t.service.pool.query<Record<string, unknown>>(
      'SELECT * FROM api_keys WHERE tenant_id = $1',
      [tenant.id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.key_hash).toEqual(hashApiKey(tenant.api_key));
    expect(JSON.stringify(rows)).not.toContain(tenant.api_key);
  } finally {
    await t.stop();
  }

  const again = await runLonghaulToEnd(['tenants', 'create', 'acme', '--json'], env());
  expect(again.code).toBe(1);
  expect(again.stdout).toBe('');
  expect(again.stderr).toContain('a tenant named "acme" exists');

  const list = await runLonghaulToEnd(['tenants', 'list', '--json'], env());
  expect(list.code).toBe(0);
  expect((JSON.parse(list.stdout) as Array<{ name: string }>).map((x) => x.name)).toContain('acme');
  expect(list.stdout).not.toContain('lh_');
});

it('stops start-up on a bad configuration value, naming the variable, with exit code 2', async () => {
  const run = await runLonghaulToEnd(['api'], { ...env(), PORT: 'abc', LONGHAUL_WEBHOOK_JITTER: '7' });
  expect(run.code).toBe(2);
  expect(run.stderr).toContain('invalid configuration');
  expect(run.stderr).toContain('PORT="abc"');
  expect(run.stderr).toContain('LONGHAUL_WEBHOOK_JITTER="7"');
});

it('prints the usage and exits 2 on an unknown command', async () => {
  const run = await runLonghaulToEnd(['frobnicate'], env());
  expect(run.code).toBe(2);
  expect(run.stderr).toContain("unknown command 'frobnicate'");
  expect(run.stderr).toContain(USAGE);
});

it('prints the usage to stdout and exits 0 for --help and -h, on any service command', async () => {
  for (const args of [['--help'], ['-h'], ['tenants', '--help'], ['demo', 'seed', '-h']]) {
    const run = await runLonghaulToEnd(args, env());
    expect(run, args.join(' ')).toMatchObject({ code: 0, stdout: USAGE, stderr: '' });
  }
});

it.each([
  [['--bogus'], "unknown option '--bogus'"],
  [['tenants'], ''],
  [['tenants', 'create'], "missing required argument 'name'"],
  [['migrate', 'extra'], 'too many arguments'],
  [['demo', 'seed', '--rows', 'many'], '--rows must be a whole number'],
  [['demo', 'seed', '--rows'], "option '--rows <n>' argument missing"],
])('`longhaul %s` is a usage error: exit 2, nothing done', async (args, message) => {
  const run = await runLonghaulToEnd(args, env());
  expect(run.code).toBe(2);
  expect(run.stdout).toBe('');
  expect(run.stderr).toContain(message);
});

it('two processes migrating the same fresh database at once both succeed, and each migration applies once', async () => {
  const serverUrl = inject('serverUrl');
  const name = `t_fresh_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
    const fresh = { DATABASE_URL: withDatabase(serverUrl, name), LONGHAUL_LOG_LEVEL: 'warn' };
    const runs = await Promise.all([runLonghaulToEnd(['migrate'], fresh), runLonghaulToEnd(['migrate'], fresh)]);
    for (const r of runs) expect(r, r.stderr).toMatchObject({ code: 0, stdout: 'migrations applied\n' });
    const files = (await readdir(SQL_DIR)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f));
    const c = new pg.Client({ connectionString: fresh.DATABASE_URL });
    await c.connect();
    try {
      const { rows } = await c.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name');
      expect(rows.map((r) => r.name)).toEqual(files.sort());
    } finally {
      await c.end();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
});
