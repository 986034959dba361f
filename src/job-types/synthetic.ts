/**
 * `synthetic`: `chunks` chunks of `chunk_ms` milliseconds each, failing its first `fail_attempts`
 * attempts. For demos, tests and benchmarks: it exercises every part of the runtime with no data.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJobType, PermanentError } from '../../packages/sdk/src/index.ts';

export const syntheticInput = z
  .object({
    chunks: z.number().int().min(0).max(1_000_000),
    chunk_ms: z.number().int().min(0).max(3_600_000),
    fail_attempts: z.number().int().min(0).max(100).optional(),
    /** Fail at this chunk (0-based) instead of at the start, to test resuming after a failure. */
    fail_at_chunk: z.number().int().min(0).optional(),
    /** Fail with a permanent error (no retry). */
    permanent: z.boolean().optional(),
  })
  .strict();

export const synthetic = defineJobType({
  name: 'synthetic',
  input: syntheticInput,
  chunkSize: 1,
  async start(ctx) {
    return { total: ctx.job.input.chunks, state: { done: 0 }, cursor: 0 };
  },
  async chunk(ctx, cursor, state) {
    const i = typeof cursor === 'number' ? cursor : 0;
    const { fail_attempts = 0, fail_at_chunk = 0, chunk_ms, chunks } = ctx.job.input;
    if (i >= chunks) return { cursor: i, done: true, processed: 0, state };
    if (ctx.job.attempt <= fail_attempts && i === fail_at_chunk) {
      const message = `synthetic failure at chunk ${i} on attempt ${ctx.job.attempt}`;
      throw ctx.job.input.permanent === true ? new PermanentError(message) : new Error(message);
    }
    if (chunk_ms > 0) await sleep(chunk_ms, undefined, { signal: ctx.signal });
    const next = i + 1;
    return { cursor: next, done: next >= ctx.job.input.chunks, processed: 1, state: { done: state.done + 1 } };
  },
  async finish(ctx, state) {
    return { chunks: state.done };
  },
});
