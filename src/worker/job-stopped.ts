/**
 * Why a running job's signal fired: the one error that stops a job without being its failure. Whoever
 * catches it (settler.ts) settles the execution by its reason, never as a failed attempt.
 */
export type StopReason = 'cancelled' | 'lease-lost' | 'shutdown' | 'timeout';

/** Why a running job's signal fired. */
export class JobStopped extends Error {
  override name = 'JobStopped';
  readonly reason: StopReason;
  constructor(reason: StopReason) {
    super(`job stopped: ${reason}`);
    this.reason = reason;
  }
}
