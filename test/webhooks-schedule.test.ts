/** When a failed webhook delivery is tried again: the schedule, its jitter, the throttle floor and Retry-After. */
import { describe, expect, it } from 'vitest';
import { nextDelaySeconds, parseRetryAfter } from '../src/webhooks/schedule.ts';

describe('retry schedule', () => {
  const policy = {
    scheduleSeconds: [5, 300, 1800, 7200, 18000, 36000, 36000],
    jitter: 0.2,
    minBackoffAfterThrottleSeconds: 60,
  };

  it('follows the default schedule for 8 attempts (about 27 h) with ±20 % jitter, then stops', () => {
    let total = 0;
    for (let attempt = 1; attempt <= 7; attempt++) {
      const base = policy.scheduleSeconds[attempt - 1] ?? 0;
      const low = nextDelaySeconds(policy, { attempt, throttled: false }, () => 0);
      const high = nextDelaySeconds(policy, { attempt, throttled: false }, () => 1);
      expect(low).toBeCloseTo(base * 0.8);
      expect(high).toBeCloseTo(base * 1.2);
      total += base;
    }
    expect(Math.floor(total / 3600)).toBe(27);
    expect(nextDelaySeconds(policy, { attempt: 8, throttled: false })).toBeUndefined();
  });

  it('waits at least 60 s after a timeout or 429', () => {
    expect(nextDelaySeconds(policy, { attempt: 1, throttled: true }, () => 0.5)).toBe(60);
    expect(nextDelaySeconds(policy, { attempt: 2, throttled: true }, () => 0.5)).toBe(300);
  });

  it('honours Retry-After within bounds: longer waits up to the longest delay, never shorter than the schedule', () => {
    expect(nextDelaySeconds(policy, { attempt: 1, throttled: false, retryAfterSeconds: 120 }, () => 0.5)).toBe(120);
    expect(nextDelaySeconds(policy, { attempt: 1, throttled: false, retryAfterSeconds: 10 ** 9 }, () => 0.5)).toBe(
      36000,
    );
    expect(nextDelaySeconds(policy, { attempt: 3, throttled: false, retryAfterSeconds: 1 }, () => 0.5)).toBe(1800);
    expect(parseRetryAfter('30')).toBe(30);
    expect(parseRetryAfter(new Date(Date.now() + 90_000).toUTCString())).toBeGreaterThan(85);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads delta-seconds, surrounding spaces allowed', () => {
    expect(parseRetryAfter('30', now)).toBe(30);
    expect(parseRetryAfter(' 120 ', now)).toBe(120);
    expect(parseRetryAfter('0', now)).toBe(0);
  });

  it('reads an HTTP date as the seconds from now until then, and a past date as no wait', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:01:30 GMT', now)).toBe(90);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
  });

  it('ignores what is neither', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('x30', now)).toBeUndefined();
    expect(parseRetryAfter('30x', now)).toBeUndefined();
  });
});
