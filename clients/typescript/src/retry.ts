/**
 * Retries for requests that are safe to repeat (reads, and submissions under an Idempotency-Key): on
 * network errors, 429, 5xx, and 409 with Retry-After (the same key still in flight). The wait is the
 * server's Retry-After when it gives one, else exponential backoff with full jitter.
 */
export interface RetryOptions {
  /** How many times to retry after the first attempt. (Default: 4) */
  retries: number;
  /** First backoff ceiling, doubled on each retry. (Default: 250 ms) */
  minDelayMs: number;
  /** Cap on any one wait, Retry-After included: a longer Retry-After is answered as is. (Default: 30 s) */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { retries: 4, minDelayMs: 250, maxDelayMs: 30_000 };

export type Fetch = (request: Request) => Promise<Response>;

/** Retry-After (delta-seconds or an HTTP-date) in milliseconds; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function backoffMs(attempt: number, opts: RetryOptions): number {
  return Math.random() * Math.min(opts.maxDelayMs, opts.minDelayMs * 2 ** attempt);
}

function retryable(res: Response): boolean {
  return res.status === 429 || res.status >= 500 || (res.status === 409 && res.headers.has('retry-after'));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `fetch` that retries as described above; the request is cloned per attempt so its body can be re-sent. */
export function retryingFetch(fetchFn: Fetch, opts: RetryOptions): Fetch {
  return async (request) => {
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetchFn(request.clone());
      } catch (err) {
        if (request.signal.aborted || attempt >= opts.retries) throw err;
        await sleep(backoffMs(attempt, opts), request.signal);
        continue;
      }
      if (!retryable(res) || attempt >= opts.retries) return res;
      const wait = retryAfterMs(res.headers.get('retry-after')) ?? backoffMs(attempt, opts);
      if (wait > opts.maxDelayMs) return res;
      await res.body?.cancel();
      await sleep(wait, request.signal);
    }
  };
}
