/**
 * The partner commands of `longhaul`: `jobs`, `dead-letters` and `deliveries`, through the client
 * package against LONGHAUL_URL with LONGHAUL_API_KEY (or --url, --key). Arguments are parsed by commander.
 * Exit codes: 0 done (a watched job COMPLETED), 1 the service answered with a problem or the watched job
 * FAILED, 2 the watched job was CANCELLED, 3 a usage or connection error, 130 watching was interrupted.
 */
import { readFile } from 'node:fs/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { Longhaul, LonghaulError, type Job, type JobStatus } from '../../clients/typescript/src/index.ts';
import { clientSettings } from '../config.ts';
import { watchJob, type Output } from './watch.ts';

const PARTNER_COMMANDS: ReadonlySet<string> = new Set(['jobs', 'dead-letters', 'deliveries']);

/** True when the command line names a partner command (after any global options, as in `--json jobs list`). */
export function isPartnerCommand(args: string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--url' || a === '--key') i++;
    else if (!a.startsWith('-')) return PARTNER_COMMANDS.has(a);
  }
  return false;
}

export const EXIT = { ok: 0, failed: 1, cancelled: 2, usage: 3, interrupted: 130 } as const;

export interface Io {
  stdout: Output;
  stderr: Output;
  /** The environment LONGHAUL_URL and LONGHAUL_API_KEY are read from. (Default: the process's, by src/config.ts) */
  env?: Record<string, string | undefined>;
  /** Aborts a watch (Ctrl-C): the job goes on. */
  signal?: AbortSignal;
}

/** A mistake in the command line that commander cannot see (bad JSON, a missing key). */
class UsageError extends Error {}

const STATUS_EXIT: Record<JobStatus, number> = {
  PENDING: EXIT.ok,
  RUNNING: EXIT.ok,
  COMPLETED: EXIT.ok,
  FAILED: EXIT.failed,
  CANCELLED: EXIT.cancelled,
};

const JOB_STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number from 1');
  return n;
}

/** `--input` and `--metadata`: JSON text, or `@file` holding it. */
async function jsonArg(value: string, name: string): Promise<unknown> {
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = await readFile(value.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(`${name}: cannot read ${value.slice(1)}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${name} is not JSON: ${(err as Error).message}`);
  }
}

function jobLine(j: Job): string {
  const progress =
    j.progress.total === null ? `${j.progress.processed}` : `${j.progress.processed}/${j.progress.total}`;
  return `${j.id}  ${j.type}  ${j.status}  ${progress}  ${j.created_at}`;
}

function jobDetail(j: Job): string {
  const rows: Array<[string, unknown]> = [
    ['id', j.id],
    ['type', j.type],
    ['status', j.status],
    ['progress', `${j.progress.processed}${j.progress.total === null ? '' : `/${j.progress.total}`}`],
    ['attempts', `${j.attempts}/${j.max_attempts}`],
    ['created', j.created_at],
    ['started', j.started_at],
    ['finished', j.finished_at],
    ['result', j.result],
    ['error', j.error],
  ];
  return rows
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k.padEnd(9)} ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join('\n');
}

function isConnectionError(err: unknown): boolean {
  return err instanceof TypeError && err.message === 'fetch failed';
}

export async function partnerCli(argv: string[], io: Io): Promise<number> {
  const settings = clientSettings(io.env);
  let code: number = EXIT.ok;
  const print = (text: string) => io.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');

  const program = new Command('longhaul')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError('(add --help for usage)')
    .option('--url <url>', 'the service (default: LONGHAUL_URL)')
    .option('--key <key>', "the tenant's API key (default: LONGHAUL_API_KEY)")
    .option('--json', 'machine-readable output: one JSON value, or one per line for lists and watches', false);

  const globals = () => program.opts<{ url?: string; key?: string; json: boolean }>();
  const client = () => {
    const url = globals().url ?? settings.url;
    const apiKey = globals().key ?? settings.apiKey;
    if (url === undefined) throw new UsageError('no service: set LONGHAUL_URL or pass --url');
    if (apiKey === undefined) throw new UsageError('no API key: set LONGHAUL_API_KEY or pass --key');
    try {
      new URL(url);
    } catch {
      throw new UsageError(`--url ${JSON.stringify(url)} is not a URL`);
    }
    return new Longhaul({ url, apiKey });
  };
  const show = (value: unknown, human: () => string) => print(globals().json ? JSON.stringify(value) : human());
  const watch = async (lh: Longhaul, id: string) => {
    const status = await watchJob(lh, id, io.stdout, {
      json: globals().json,
      ...(io.signal === undefined ? {} : { signal: io.signal }),
    });
    if (!globals().json) print(`job ${id} ${status}`);
    code = STATUS_EXIT[status];
  };

  const jobs = program.command('jobs').description('submit, read, list, watch, cancel and retry jobs');
  jobs
    .command('submit <type>')
    .description('submit a job; with --watch, follow it to its end')
    .requiredOption('--input <json>', "the job's input: JSON, or @file")
    .option('--callback-url <url>', 'where the signed webhook goes when the job ends')
    .option('--metadata <json>', 'a JSON object returned with the job, or @file')
    .option('--idempotency-key <key>', 'the Idempotency-Key (default: a new UUID)')
    .option('--watch', 'follow the job until it ends; the exit code tells how', false)
    .action(
      async (
        type: string,
        o: { input: string; callbackUrl?: string; metadata?: string; idempotencyKey?: string; watch: boolean },
      ) => {
        const lh = client();
        const body = {
          type,
          input: await jsonArg(o.input, '--input'),
          ...(o.callbackUrl === undefined ? {} : { callback_url: o.callbackUrl }),
          ...(o.metadata === undefined
            ? {}
            : { metadata: (await jsonArg(o.metadata, '--metadata')) as Record<string, unknown> }),
        };
        const job = await lh.jobs.submitUntyped(
          body,
          o.idempotencyKey === undefined ? {} : { idempotencyKey: o.idempotencyKey },
        );
        show(job, () => `job ${job.id} submitted`);
        if (o.watch) await watch(lh, job.id);
      },
    );
  jobs
    .command('get <id>')
    .description('show a job')
    .action(async (id: string) => {
      const job = await client().jobs.get(id);
      show(job, () => jobDetail(job));
    });
  jobs
    .command('list')
    .description('list jobs, newest first')
    .addOption(new Option('--status <status>', 'only jobs in this status').choices(JOB_STATUSES))
    .option('--type <type>', 'only jobs of this type')
    .option('--limit <n>', 'at most this many', positiveInt, 20)
    .action(async (o: { status?: JobStatus; type?: string; limit: number }) => {
      let n = 0;
      const query = {
        limit: Math.min(o.limit, 200),
        ...(o.status ? { status: o.status } : {}),
        ...(o.type ? { type: o.type } : {}),
      };
      for await (const job of client().jobs.list(query)) {
        print(globals().json ? JSON.stringify(job) : jobLine(job));
        if (++n >= o.limit) break;
      }
    });
  jobs
    .command('watch <id>')
    .description('follow a job until it ends (Ctrl-C stops watching, not the job)')
    .action(async (id: string) => watch(client(), id));
  jobs
    .command('cancel <id>')
    .description('cancel a job (a running one stops at its next chunk)')
    .action(async (id: string) => {
      const job = await client().jobs.cancel(id);
      show(job, () => `${job.id} ${job.status === 'CANCELLED' ? 'CANCELLED' : 'cancellation requested'}`);
    });
  jobs
    .command('retry <id>')
    .description('run a FAILED job again')
    .addOption(
      new Option('--from <where>', 'resume from the last checkpoint or start over')
        .choices(['checkpoint', 'start'])
        .default('checkpoint'),
    )
    .action(async (id: string, o: { from: 'checkpoint' | 'start' }) => {
      const job = await client().jobs.retry(id, { from: o.from });
      show(job, () => `${job.id} ${job.status} (retried from ${o.from})`);
    });

  const dead = program.command('dead-letters').description('jobs that failed for good');
  dead
    .command('list')
    .description('list dead-lettered jobs, newest first')
    .option('--type <type>', 'only jobs of this type')
    .option('--since <time>', 'dead-lettered at or after (ISO 8601)')
    .option('--until <time>', 'dead-lettered before (ISO 8601)')
    .option('--limit <n>', 'at most this many', positiveInt, 20)
    .action(async (o: { type?: string; since?: string; until?: string; limit: number }) => {
      let n = 0;
      const { limit, ...filter } = o;
      for await (const d of client().deadLetters.list({ ...filter, limit: Math.min(limit, 200) })) {
        print(globals().json ? JSON.stringify(d) : `${d.dead_lettered_at}  ${jobLine(d.job)}`);
        if (++n >= limit) break;
      }
    });
  dead
    .command('replay')
    .description('retry the dead-lettered jobs the filter selects')
    .option('--type <type>', 'only jobs of this type')
    .option('--since <time>', 'dead-lettered at or after (ISO 8601)')
    .option('--until <time>', 'dead-lettered before (ISO 8601)')
    .addOption(
      new Option('--from <where>', 'resume from the last checkpoint or start over').choices(['checkpoint', 'start']),
    )
    .option('--limit <n>', 'at most this many', positiveInt)
    .action(
      async (o: { type?: string; since?: string; until?: string; from?: 'checkpoint' | 'start'; limit?: number }) => {
        const r = await client().deadLetters.replay(o);
        show(r, () => `replayed ${r.replayed}${r.job_ids.length > 0 ? `: ${r.job_ids.join(' ')}` : ''}`);
      },
    );

  const deliveries = program.command('deliveries').description('webhook deliveries');
  deliveries
    .command('list')
    .description('list webhook deliveries, newest first')
    .addOption(
      new Option('--status <status>', 'only deliveries in this status').choices(['pending', 'succeeded', 'dead']),
    )
    .option('--since <time>', 'created at or after (ISO 8601)')
    .option('--until <time>', 'created before (ISO 8601)')
    .option('--limit <n>', 'at most this many', positiveInt, 20)
    .action(async (o: { status?: 'pending' | 'succeeded' | 'dead'; since?: string; until?: string; limit: number }) => {
      let n = 0;
      const { limit, ...filter } = o;
      for await (const d of client().deliveries.list({ ...filter, limit: Math.min(limit, 200) })) {
        print(
          globals().json
            ? JSON.stringify(d)
            : `${d.id}  ${d.event_type}  ${d.status}  attempts ${d.attempt_count}  job ${d.job_id}  ${d.url}`,
        );
        if (++n >= limit) break;
      }
    });
  deliveries
    .command('redeliver <id>')
    .description("send a delivery's event again")
    .action(async (id: string) => {
      const d = await client().deliveries.redeliver(id);
      show(d, () => `${d.id} ${d.status} (webhook-id ${d.webhook_id})`);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof UsageError) {
      io.stderr.write(`longhaul: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof LonghaulError) {
      const p = err.problem;
      io.stderr.write(
        `longhaul: ${err.status} ${err.message}${(p?.errors ?? []).map((e) => `\n  ${e.field}: ${e.message}`).join('')}${err.requestId === undefined ? '' : `\n  request id: ${err.requestId}`}\n`,
      );
      return EXIT.failed;
    }
    if (io.signal?.aborted === true) {
      io.stderr.write('longhaul: stopped watching; the job goes on\n');
      return EXIT.interrupted;
    }
    if (isConnectionError(err)) {
      const cause = (err as Error).cause as { message?: string } | undefined;
      io.stderr.write(`longhaul: cannot reach the service: ${cause?.message ?? (err as Error).message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
}

/** `longhaul jobs …` as a process runs it: on its stdout and stderr, Ctrl-C stopping a watch (not the job). */
export function runPartnerCommand(args: string[]): Promise<number> {
  const interrupt = new AbortController();
  process.once('SIGINT', () => interrupt.abort());
  return partnerCli(args, { stdout: process.stdout, stderr: process.stderr, signal: interrupt.signal });
}
