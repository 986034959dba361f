/**
 * The wait before a failed job's next attempt (src/worker/attempts.ts retryDelaySeconds): pg-boss's
 * exponential backoff with jitter, which retried executions before the claim consumed them, in whole
 * seconds. Known answers at the two ends of the jitter.
 */
import { describe, expect, it } from 'vitest';
import { retryDelaySeconds } from '../src/worker/attempts.ts';
import { DEFAULT_BACKOFF } from '../packages/sdk/src/index.ts';

describe('retryDelaySeconds', () => {
  it('doubles from the initial delay with each attempt, times one to two', () => {
    const backoff = { initialSeconds: 2, maxSeconds: 300 };
    expect([1, 2, 3, 4].map((n) => retryDelaySeconds(backoff, n, 0))).toEqual([2, 4, 8, 16]);
    expect([1, 2, 3, 4].map((n) => retryDelaySeconds(backoff, n, 0.999))).toEqual([4, 8, 16, 32]);
    expect(retryDelaySeconds(backoff, 3, 0.5)).toBe(12);
  });

  it('never waits longer than the maximum, nor less than a second', () => {
    expect(retryDelaySeconds(DEFAULT_BACKOFF, 9, 0)).toBe(256);
    expect(retryDelaySeconds(DEFAULT_BACKOFF, 9, 0.5)).toBe(300);
    expect(retryDelaySeconds(DEFAULT_BACKOFF, 40, 0.999)).toBe(300);
    expect(retryDelaySeconds({ initialSeconds: 0, maxSeconds: 300 }, 1, 0)).toBe(1);
    expect(retryDelaySeconds({ initialSeconds: 0.2, maxSeconds: 300 }, 1, 0.999)).toBe(2);
  });

  it('counts the first attempt’s failure from the initial delay', () => {
    expect(retryDelaySeconds(DEFAULT_BACKOFF, 0, 0)).toBe(1);
    expect(retryDelaySeconds(DEFAULT_BACKOFF, 1, 0)).toBe(1);
  });
});
