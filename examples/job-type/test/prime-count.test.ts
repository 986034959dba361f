// The job type's own test, without a longhaul: drive start, chunk and finish as the worker would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isPermanentError } from '@longhaul/sdk';
import { primeCount } from '../src/index.ts';

function context(limit: number) {
  const log = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
  const job = { id: 'j1', tenantId: 't1', type: 'prime-count', input: { limit }, metadata: null, attempt: 1 };
  return { job, log, signal: new AbortController().signal, db: undefined as never, chunkSize: 1000 };
}

test('counts the primes below the limit, chunk by chunk', async () => {
  const ctx = context(10_000);
  const started = await primeCount.start(ctx);
  let { cursor, state } = started;
  let chunks = 0;
  for (;;) {
    const r = await primeCount.chunk(ctx, cursor ?? null, state);
    chunks++;
    ({ cursor, state } = r);
    if (r.done) break;
  }
  assert.equal(chunks, 10);
  assert.deepEqual(await primeCount.finish(ctx, state), { primes: 1229 });
});

test('refuses a limit above MAX_LIMIT for good (no retry)', async () => {
  await assert.rejects(primeCount.start(context(60_000_000)), (err) => isPermanentError(err));
});

test('validates its input', () => {
  assert.equal(primeCount.input.safeParse({ limit: -1 }).success, false);
  assert.equal(primeCount.input.safeParse({ limit: 10 }).success, true);
});
