/**
 * A partner's view of @longhaul/client: the package is packed, installed from its tarball into an empty
 * project, type-checked as a TypeScript consumer would, and a partner program (plain JavaScript, the
 * package's README example) submits, watches, waits, cancels and verifies a webhook against a real
 * service, on Node 24 and on the machine's Node 20 when it has one.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { nodes, packed, ROOT, tempProject } from './support/packages.ts';
import { startTestService, type TestService } from './support/service.ts';

const run = promisify(execFile);

const PARTNER = `
import { createServer } from 'node:http';
import { Longhaul, LonghaulError } from '@longhaul/client';

const lh = new Longhaul({ url: process.env.LONGHAUL_URL, apiKey: process.env.LONGHAUL_API_KEY, webhookSecret: process.env.WEBHOOK_SECRET });
const out = { node: process.versions.node };

// The partner's webhook endpoint: verify the raw body before trusting it.
const verified = [];
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const event = await lh.webhooks.verify(Buffer.concat(chunks).toString('utf8'), req.headers);
      verified.push(event);
      res.writeHead(204).end();
    } catch (err) {
      out.refused = String(err);
      res.writeHead(400).end();
    }
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const callback_url = 'http://127.0.0.1:' + server.address().port + '/hooks/longhaul';

const job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 4, chunk_ms: 20 }, callback_url });
out.types = [];
for await (const m of lh.jobs.watch(job.id)) out.types.push(m.type);
out.final = (await lh.jobs.wait(job.id, { timeout: 30000 })).status;

const slow = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 100, chunk_ms: 50 } });
await lh.jobs.cancel(slow.id);
out.cancelled = (await lh.jobs.wait(slow.id, { timeout: 30000 })).status;

out.listed = 0;
for await (const j of lh.jobs.list({ limit: 1 })) out.listed++;
try {
  await lh.jobs.submit({ type: 'synthetic', input: { chunks: -1, chunk_ms: 0 } });
} catch (err) {
  out.problem = err instanceof LonghaulError ? err.status + ' ' + err.problem.errors[0].field : String(err);
}
const deadline = Date.now() + 30000;
while (verified.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
out.webhook = verified[0] && verified[0].type + ' ' + (verified[0].data.id === job.id);
server.close();
process.stdout.write(JSON.stringify(out));
`;

// A TypeScript partner: the shipped .d.ts types the calls, and a mistake is a compile error.
const TYPED = `
import { Longhaul, type Job, type StreamMessage } from '@longhaul/client';
const lh = new Longhaul({ url: 'http://127.0.0.1:1', apiKey: 'lh_x' });
export async function use(): Promise<Job['status']> {
  const job: Job = await lh.jobs.submit({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } });
  // @ts-expect-error: a report needs a source
  await lh.jobs.submit({ type: 'report', input: { title: 'x' } });
  for await (const m of lh.jobs.watch(job.id)) if (m.type === 'progress') console.log(m.percent satisfies number | null);
  const first: StreamMessage | undefined = undefined;
  void first;
  return (await lh.jobs.wait(job.id, { timeout: 1000 })).status;
}
// @ts-expect-error: the status of a job is one of the documented values
export const wrong: Job['status'] = 'DONE';
`;

let t: TestService;
let project: Awaited<ReturnType<typeof tempProject>>;

beforeAll(async () => {
  const tarball = await packed('clients/typescript');
  [t, project] = await Promise.all([
    startTestService({
      roles: ['api', 'worker'],
      env: { LONGHAUL_CALLBACK_ALLOW: '127.0.0.1', LONGHAUL_WEBHOOK_POLL_SECONDS: '0.2' },
    }),
    tempProject(
      'partner',
      {
        'partner.js': PARTNER,
        'typed.ts': TYPED,
        'tsconfig.json': JSON.stringify({
          compilerOptions: {
            strict: true,
            module: 'nodenext',
            target: 'es2022',
            noEmit: true,
            skipLibCheck: true,
            types: [],
            lib: ['es2022', 'dom'],
          },
          files: ['typed.ts'],
        }),
      },
      [tarball],
    ),
  ]);
}, 300_000);
afterAll(async () => {
  await project?.remove();
  await t?.stop();
});

it('installs with its types: a TypeScript partner compiles, and a wrong value does not', async () => {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const res = await run(process.execPath, [tsc, '-p', project.dir]).catch((e: { stdout: string }) => e);
  expect(res.stdout).toBe('');
});

it('runs a partner program on each Node the machine has', async () => {
  const found = await nodes();
  expect(found.map((n) => n.major)).toContain(24);
  for (const { bin, major } of found) {
    const { stdout } = await run(bin, ['partner.js'], {
      cwd: project.dir,
      env: {
        PATH: process.env.PATH,
        LONGHAUL_URL: t.url,
        LONGHAUL_API_KEY: t.tenant.api_key,
        WEBHOOK_SECRET: t.tenant.webhook_secret,
      },
      timeout: 90_000,
    });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(Number(String(out.node).split('.')[0]), bin).toBe(major);
    expect(out, `Node ${major}`).toMatchObject({
      final: 'COMPLETED',
      cancelled: 'CANCELLED',
      problem: '422 input.chunks',
      webhook: 'job.completed true',
    });
    expect((out.types as string[])[0]).toBe('snapshot');
    expect((out.types as string[]).at(-1)).toBe('status');
    expect(out.listed).toBeGreaterThanOrEqual(2);
    expect(out.refused).toBeUndefined();
  }
});
