/**
 * The start/stop base of background services (the worker's monitor, retention sweeps, the realtime hub's
 * pings): tasks run every interval, never overlapping themselves, with failures logged. A failure
 * because the database cannot be reached is logged at debug only: the outage itself is logged once, by
 * the process's LISTEN connection (src/db/listener.ts), and the next run after it succeeds.
 */
import { isConnectionError } from './db/pool.ts';
import type { Logger } from './observability/logger.ts';

interface Task {
  what: string;
  intervalMs: number;
  run: () => unknown;
  timer: NodeJS.Timeout | undefined;
  running: Promise<void> | undefined;
}

export class Periodic {
  readonly #log: Logger;
  readonly #tasks: Task[] = [];
  #started = false;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Adds a task run every `intervalMs` once started (a tick is skipped while its previous run is still going). */
  every(what: string, intervalMs: number, run: () => unknown): this {
    const task: Task = { what, intervalMs, run, timer: undefined, running: undefined };
    this.#tasks.push(task);
    if (this.#started) this.#arm(task);
    return this;
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const task of this.#tasks) this.#arm(task);
  }

  /** Stops the timers and waits for runs in progress. */
  async stop(): Promise<void> {
    this.#started = false;
    for (const task of this.#tasks) clearInterval(task.timer);
    for (const task of this.#tasks) await task.running;
  }

  #arm(task: Task): void {
    task.timer = setInterval(() => {
      if (task.running !== undefined) return;
      task.running = (async () => task.run())()
        .then(
          () => undefined,
          (err: unknown) => {
            if (isConnectionError(err)) this.#log.debug({ err }, `${task.what} failed: the database is unreachable`);
            else this.#log.warn({ err }, `${task.what} failed`);
          },
        )
        .finally(() => (task.running = undefined));
    }, task.intervalMs);
    task.timer.unref();
  }
}
