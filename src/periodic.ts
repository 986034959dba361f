/** Background housekeeping: a task run every interval, never overlapping itself, with failures logged. */
import type { Logger } from './observability/logger.ts';

/**
 * Runs `task` every `intervalMs` (skipping a tick while the previous run is still going) and logs a
 * failure as a warning naming `what`. Returns a function that stops the timer and waits for a run in progress.
 */
export function runPeriodically(
  what: string,
  intervalMs: number,
  task: () => Promise<void>,
  log: Logger,
): () => Promise<void> {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running !== undefined) return;
    running = task()
      .catch((err: unknown) => log.warn({ err }, `${what} failed`))
      .finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
