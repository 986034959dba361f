/** When the next attempt of a failed delivery happens, or that there is none. */

export interface RetryPolicy {
  /** Delay before attempt 2, 3, …, in seconds; attempts = delays + 1. (Default: 5, 300, 1800, 7200, 18000, 36000, 36000) */
  scheduleSeconds: readonly number[];
  /** Each delay is multiplied by a random factor in [1 − jitter, 1 + jitter]. (Default: 0.2) */
  jitter: number;
  /** After a timeout, 429, 502 or 504, the next wait is at least this long, in seconds. (Default: 60) */
  minBackoffAfterThrottleSeconds: number;
}

export interface FailureInfo {
  /** The attempt that failed, counted from 1 since the delivery was created or last replayed. */
  attempt: number;
  /** The receiver throttled us (429, 502, 504) or did not answer in time. */
  throttled: boolean;
  /** Seconds from a Retry-After header, when the response had one. */
  retryAfterSeconds?: number | undefined;
}

/**
 * Seconds until the next attempt, or undefined when the schedule is exhausted. Retry-After can lengthen
 * the wait up to the schedule's longest delay, never shorten it below the schedule (within bounds: a
 * partner cannot park a delivery for days nor make us hammer it).
 */
export function nextDelaySeconds(
  policy: RetryPolicy,
  failure: FailureInfo,
  random: () => number = Math.random,
): number | undefined {
  const base = policy.scheduleSeconds[failure.attempt - 1];
  if (base === undefined) return undefined;
  let wait = base * (1 + policy.jitter * (2 * random() - 1));
  if (failure.retryAfterSeconds !== undefined) {
    const cap = Math.max(...policy.scheduleSeconds);
    wait = Math.max(wait, Math.min(failure.retryAfterSeconds, cap));
  }
  if (failure.throttled) wait = Math.max(wait, policy.minBackoffAfterThrottleSeconds);
  return wait;
}

/** Seconds in a Retry-After header (delta-seconds or an HTTP date), if it holds a usable value. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, (at - now) / 1000);
}
