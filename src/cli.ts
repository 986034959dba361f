/**
 * The `longhaul` command: `longhaul [start]` (all roles), `longhaul api`, `longhaul worker`,
 * `longhaul migrate`, `longhaul tenants create NAME [--json]`, `longhaul demo seed --rows N`.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { openDatabase } from './db/database.ts';
import { migrate } from './db/migrate.ts';
import { createPool } from './db/pool.ts';
import { seedDemoOrders } from './job-types/report/seed.ts';
import { createLogger } from './observability/logger.ts';
import { startService, type Role, type Service } from './service.ts';
import { createTenant, listTenants, TenantExistsError } from './tenants/repository.ts';

export const USAGE = `usage: longhaul <command>
  start                      API, workers and webhook dispatcher in one process (default)
  api                        the HTTP API only
  worker                     job workers, webhook dispatcher and monitors only
  migrate                    apply database migrations and exit
  tenants create NAME [--json]   create a tenant and print its API key and webhook secret
  tenants list [--json]      list tenants
  demo seed --rows N         (re)create the demo table demo_orders with N rows, for the report job

Partner commands (the API over HTTP, LONGHAUL_URL and LONGHAUL_API_KEY or --url and --key; --json):
  jobs submit TYPE --input JSON|@file [--watch]   jobs get|watch|cancel|retry ID   jobs list
  dead-letters list|replay                         deliveries list|redeliver ID
  (longhaul jobs --help for more)
`;

function config(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`longhaul: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/**
 * Runs roles until SIGTERM/SIGINT, then drains and exits 0. A signal while start-up still waits for the
 * database ends the wait and exits 0; a start-up that fails otherwise exits 1.
 */
export async function runService(roles: Role[]): Promise<void> {
  const cfg = config();
  const log = createLogger(cfg.logLevel);
  const starting = new AbortController();
  let svc: Service | undefined;
  let signals = 0;
  const shutdown = (signal: string) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting without draining');
      process.exit(1);
    }
    const service = svc;
    if (service === undefined) {
      log.info({ signal }, 'stopping before start-up finished');
      starting.abort(new Error(`${signal} during start-up`));
      return;
    }
    log.info({ signal }, 'draining');
    const force = setTimeout(
      () => {
        log.error('drain timed out; exiting');
        process.exit(1);
      },
      (cfg.shutdownTimeoutSeconds + 10) * 1000,
    );
    force.unref();
    service
      .stop()
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    svc = await startService({ config: cfg, roles, log, signal: starting.signal });
  } catch (err) {
    if (starting.signal.aborted) {
      log.info('stopped');
      process.exit(0);
    }
    log.fatal({ err }, 'start-up failed');
    process.exit(1);
  }
  log.info({ roles, url: svc.url }, 'longhaul started');
}

async function withDatabase<T>(fn: (pool: ReturnType<typeof createPool>) => Promise<T>): Promise<T> {
  const cfg = config();
  const log = createLogger(cfg.logLevel === 'info' ? 'warn' : cfg.logLevel);
  const db = await openDatabase(cfg, log);
  const pool = createPool(db.url, 2, 'longhaul-cli');
  try {
    await migrate(pool);
    return await fn(pool);
  } finally {
    await pool.end();
    await db.close();
  }
}

/** A pool on another database (the report database), for the time of `fn`. */
async function withPool<T>(url: string, fn: (pool: ReturnType<typeof createPool>) => Promise<T>): Promise<T> {
  const pool = createPool(url, 2, 'longhaul-cli');
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

/** `--rows N`: a whole number of rows, 0 included. */
function wholeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new UsageError('--rows must be a whole number');
  return n;
}

/** A mistake in the command line, said in one line before the usage. */
class UsageError extends Error {}

/**
 * Parses the service commands with commander (as src/cli/partner.ts does the partner ones). Returns the
 * exit code, or -1 for a service that keeps running; usage mistakes print the usage to stderr and give 2.
 */
export async function cli(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('longhaul')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => process.stdout.write(text),
      writeErr: (text) => process.stderr.write(text),
    })
    // One usage text for every command and every mistake, as the partner commands' help points to.
    .configureHelp({ formatHelp: () => USAGE })
    .showHelpAfterError()
    .helpCommand(false)
    .option('--json', 'machine-readable output', false);
  const json = () => program.opts<{ json: boolean }>().json;

  program.command('start').action(async () => {
    await runService(['api', 'worker']);
    code = -1;
  });
  for (const role of ['api', 'worker'] as const)
    program.command(role).action(async () => {
      await runService([role]);
      code = -1;
    });
  program.command('migrate').action(async () => {
    await withDatabase(async () => undefined);
    process.stdout.write('migrations applied\n');
  });
  program
    .command('demo')
    .command('seed')
    .option('--rows <n>', 'rows of demo_orders', '1000000')
    .action(async (opts: { rows: string }) => {
      const rows = wholeNumber(opts.rows);
      const reportUrl = config().report.databaseUrl;
      const seed = async (pool: ReturnType<typeof createPool>) => seedDemoOrders(pool, rows);
      const ms = reportUrl === undefined ? await withDatabase(seed) : await withPool(reportUrl, seed);
      process.stdout.write(`demo_orders: ${rows} rows in ${(ms / 1000).toFixed(1)} s\n`);
    });
  const tenants = program.command('tenants');
  tenants
    .command('create')
    .argument('<name>')
    .action(async (name: string) => {
      try {
        const t = await withDatabase((pool) => createTenant(pool, name));
        process.stdout.write(
          json()
            ? JSON.stringify(t) + '\n'
            : `tenant ${t.name} (${t.id})\napi key: ${t.api_key}\nwebhook secret: ${t.webhook_secret}\n`,
        );
      } catch (err) {
        if (!(err instanceof TenantExistsError)) throw err;
        process.stderr.write(`longhaul: ${err.message}\n`);
        code = 1;
      }
    });
  tenants.command('list').action(async () => {
    const list = await withDatabase((pool) => listTenants(pool));
    process.stdout.write(
      json() ? JSON.stringify(list) + '\n' : list.map((t) => `${t.id}  ${t.name}`).join('\n') + '\n',
    );
  });

  try {
    // No command: `start` (not commander's default command, which would take an unknown command's name as its argument).
    const args = argv.some((a) => !a.startsWith('-')) ? argv : ['start', ...argv];
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError) {
      process.stderr.write(`longhaul: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return code;
}
