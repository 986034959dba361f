/**
 * `prime-count`: counts the primes below `limit`, a block of numbers per chunk. Each chunk's count is
 * checkpointed, so a job whose worker dies resumes at the next block instead of starting over.
 */
import { defineJobType, PermanentError } from '@longhaul/sdk';
import { z } from 'zod';

/** Bigger limits are valid input but more than one job should take on: split them into ranges. */
export const MAX_LIMIT = 50_000_000;

export function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

export const primeCount = defineJobType({
  name: 'prime-count',
  input: z.object({ limit: z.number().int().min(0).max(1_000_000_000) }).strict(),
  // Numbers per chunk: `chunk` gets it as ctx.chunkSize.
  chunkSize: 20_000,
  maxAttempts: 3,
  async start(ctx) {
    if (ctx.job.input.limit > MAX_LIMIT)
      throw new PermanentError(`limit ${ctx.job.input.limit} is above ${MAX_LIMIT}: submit smaller ranges`);
    return { total: ctx.job.input.limit, state: { primes: 0 }, cursor: 0 };
  },
  async chunk(ctx, cursor, state) {
    const from = typeof cursor === 'number' ? cursor : 0;
    const to = Math.min(ctx.job.input.limit, from + ctx.chunkSize);
    let primes = state.primes;
    for (let n = from; n < to; n++) if (isPrime(n)) primes++;
    return { cursor: to, done: to >= ctx.job.input.limit, processed: to - from, state: { primes } };
  },
  async finish(_ctx, state) {
    return { primes: state.primes };
  },
});
