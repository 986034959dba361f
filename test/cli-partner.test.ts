/**
 * The partner commands of `longhaul` against a running service: exit codes (0 COMPLETED, 1 FAILED or a
 * problem, 2 CANCELLED, 3 usage or connection), `--json`, plain lines when stdout is not a terminal (real
 * child processes), and the live bar on a terminal 60 columns wide: the command writes to a stream that
 * says it is a TTY, and @xterm/headless (the terminal emulator of xterm.js) renders what it wrote, so
 * the test reads the screen a user would see. (A real pseudo-terminal would need `script` or node-pty's
 * native build, which a machine with only Node and npm does not have.)
 */
import { Writable } from 'node:stream';
import xterm from '@xterm/headless';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partnerCli } from '../src/cli/partner.ts';
import { runLonghaulToEnd } from './support/process.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ roles: ['api', 'worker'] });
});
afterAll(async () => t.stop());

const env = () => ({ LONGHAUL_URL: t.url, LONGHAUL_API_KEY: t.tenant.api_key });
const longhaul = (...args: string[]) => runLonghaulToEnd(args, env());

/** A Writable that collects text; `tty` makes it claim to be a terminal `columns` wide. */
function capture(tty?: { columns: number }) {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      text += chunk.toString();
      done();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  if (tty !== undefined) Object.assign(stream, { isTTY: true, columns: tty.columns });
  return { stream, text: () => text };
}

/** The screen of a `columns`-wide terminal after it was sent `text`, one string per row, trailing blanks trimmed. */
async function screen(text: string, columns: number): Promise<string[]> {
  // convertEol: a terminal's line discipline turns "\n" into "\r\n" (onlcr); the emulator alone does not.
  const term = new xterm.Terminal({ cols: columns, rows: 12, allowProposedApi: true, convertEol: true });
  await new Promise<void>((resolve) => term.write(text, resolve));
  const rows: string[] = [];
  for (let i = 0; i < term.rows; i++) rows.push(term.buffer.active.getLine(i)?.translateToString(true) ?? '');
  term.dispose();
  while (rows.at(-1) === '') rows.pop();
  return rows;
}

describe('exit codes and plain output', () => {
  it('submit --watch: lines of progress and exit 0 for COMPLETED', async () => {
    const run = await longhaul('jobs', 'submit', 'synthetic', '--input', '{"chunks":4,"chunk_ms":30}', '--watch');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^job [0-9a-f-]{36} submitted$/);
    expect(lines).toContain('COMPLETED 4/4 100%');
    expect(lines.at(-1)).toMatch(/^job [0-9a-f-]{36} COMPLETED$/);
    expect(run.stdout).not.toContain('\x1b');
  });

  it('exits 1 when the watched job FAILED, 2 when it was CANCELLED', async () => {
    const failed = await longhaul(
      'jobs',
      'submit',
      'synthetic',
      '--input',
      '{"chunks":2,"chunk_ms":1,"fail_attempts":1,"permanent":true}',
      '--watch',
    );
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/FAILED$/m);

    const submitted = await longhaul(
      '--json',
      'jobs',
      'submit',
      'synthetic',
      '--input',
      '{"chunks":200,"chunk_ms":50}',
    );
    const id = (JSON.parse(submitted.stdout) as { id: string }).id;
    const [watched, cancelled] = await Promise.all([
      longhaul('jobs', 'watch', id),
      (async () => {
        // Cancel once the watch has seen the job run (the worker took it).
        for (;;) {
          const got = JSON.parse((await longhaul('jobs', 'get', id, '--json')).stdout) as { status: string };
          if (got.status === 'RUNNING') break;
        }
        return longhaul('jobs', 'cancel', id);
      })(),
    ]);
    expect(cancelled.code).toBe(0);
    expect(watched.code).toBe(2);
    expect(watched.stdout.trim().split('\n').at(-1)).toBe(`job ${id} CANCELLED`);
  });

  it('exits 3 on usage and connection errors, 1 on a problem from the service', async () => {
    const badJson = await longhaul('jobs', 'submit', 'synthetic', '--input', '{nope');
    expect(badJson).toMatchObject({ code: 3, stdout: '' });
    expect(badJson.stderr).toContain('--input is not JSON');
    expect((await longhaul('jobs', 'submit', 'synthetic')).code).toBe(3);
    expect((await longhaul('jobs', 'frobnicate')).code).toBe(3);
    expect((await longhaul('jobs', 'list', '--limit', 'lots')).code).toBe(3);
    const noKey = await runLonghaulToEnd(['jobs', 'list'], { LONGHAUL_URL: t.url });
    expect(noKey).toMatchObject({ code: 3 });
    expect(noKey.stderr).toContain('LONGHAUL_API_KEY');
    const down = await longhaul('jobs', 'list', '--url', 'http://127.0.0.1:9');
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('cannot reach the service');

    const invalid = await longhaul('jobs', 'submit', 'synthetic', '--input', '{"chunks":-1,"chunk_ms":0}');
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('input.chunks');
    expect(invalid.stderr).toMatch(/request id: \S+/);
    const missing = await longhaul('jobs', 'get', '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('404');
  });
});

describe('--json', () => {
  it('prints one JSON value per command, one per line for lists and watches', async () => {
    const tenant = await t.newTenant();
    const run = (...args: string[]) =>
      runLonghaulToEnd(['--json', ...args], { LONGHAUL_URL: t.url, LONGHAUL_API_KEY: tenant.api_key });
    const submitted = await run(
      'jobs',
      'submit',
      'synthetic',
      '--input',
      '{"chunks":2,"chunk_ms":1}',
      '--metadata',
      '{"a":1}',
      '--watch',
    );
    expect(submitted.code).toBe(0);
    const [job, ...messages] = submitted.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(job).toMatchObject({ type: 'synthetic', status: 'PENDING', metadata: { a: 1 } });
    expect(messages[0]?.type).toBe('snapshot');
    // A job that finished before the watch began ends its stream with the snapshot alone.
    const last = messages.at(-1) as { type?: string; status?: string; job?: { status?: string } } | undefined;
    expect(last?.type === 'snapshot' ? last.job?.status : last?.status).toBe('COMPLETED');

    const id = String(job?.id);
    expect(JSON.parse((await run('jobs', 'get', id)).stdout)).toMatchObject({ id, status: 'COMPLETED' });
    const listed = (await run('jobs', 'list', '--status', 'COMPLETED')).stdout.trim().split('\n');
    expect(listed.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual([id]);
    const dead = await run('dead-letters', 'list');
    expect(dead).toMatchObject({ code: 0, stdout: '' });
    expect(JSON.parse((await run('dead-letters', 'replay')).stdout)).toEqual({ replayed: 0, job_ids: [] });
    expect(await run('deliveries', 'list')).toMatchObject({ code: 0, stdout: '' });
    const retried = await run('jobs', 'retry', id);
    expect(retried.code).toBe(1);
    expect(retried.stderr).toContain('409');
  });
});

describe('on a terminal', () => {
  it('draws one moving bar with percent, rate and ETA within 60 columns, and ends with the job', async () => {
    const out = capture({ columns: 60 });
    const err = capture();
    const renders = new Set<string>();
    const write = out.stream.write.bind(out.stream);
    out.stream.write = ((chunk: string, ...rest: never[]) => {
      const r = write(chunk, ...rest);
      renders.add(/(\d+)%/.exec(String(chunk))?.[1] ?? '');
      return r;
    }) as typeof out.stream.write;
    const code = await partnerCli(
      ['jobs', 'submit', 'synthetic', '--input', '{"chunks":10,"chunk_ms":60}', '--watch'],
      { stdout: out.stream, stderr: err.stream, env: env() },
    );
    expect(err.text()).toBe('');
    expect(code).toBe(0);
    const rows = await screen(out.text(), 60);
    // The submission line, the bar redrawn in place on one row, the final line.
    expect(rows, JSON.stringify(rows)).toHaveLength(3);
    expect(rows[0]).toMatch(/^job [0-9a-f-]{36} submitted$/);
    expect(rows[1]).toMatch(/^COMPLETED \|#+\| 100% 10\/10 [\d.]+\/s ETA 0s$/);
    expect(rows[1]?.length).toBeLessThanOrEqual(60);
    expect(rows[2]).toMatch(/^job [0-9a-f-]{36} COMPLETED$/);
    // The bar moved: it was drawn at several percentages on its way.
    expect([...renders].filter((r) => r !== '').length).toBeGreaterThanOrEqual(4);
  });

  it('Ctrl-C stops watching with 130 and leaves the job running', async () => {
    // Long enough to outlast any wait below however slow the machine (each `jobs get` is a process); it
    // is cancelled at the end.
    const submitted = await longhaul(
      '--json',
      'jobs',
      'submit',
      'synthetic',
      '--input',
      '{"chunks":20000,"chunk_ms":50}',
    );
    const id = (JSON.parse(submitted.stdout) as { id: string }).id;
    const ctrlC = new AbortController();
    const out = capture({ columns: 80 });
    const err = capture();
    out.stream.on('finish', () => undefined);
    const watching = partnerCli(['jobs', 'watch', id], {
      stdout: out.stream,
      stderr: err.stream,
      env: env(),
      signal: ctrlC.signal,
    });
    for (;;) {
      const j = JSON.parse((await longhaul('jobs', 'get', id, '--json')).stdout) as { progress: { processed: number } };
      if (j.progress.processed > 0) break;
    }
    ctrlC.abort();
    expect(await watching).toBe(130);
    expect(err.text()).toContain('the job goes on');
    const after = JSON.parse((await longhaul('jobs', 'get', id, '--json')).stdout) as { status: string };
    expect(after.status).toBe('RUNNING');
    expect((await longhaul('jobs', 'cancel', id)).code).toBe(0);
  });
});
