/** The job state machine: the one place that says which status may follow which. */
export const JOB_STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/**
 * A job's phase, the jobs column indexed in place of its status (sql/100): the status, with PENDING and
 * RUNNING both ACTIVE, so that a claim (PENDING → RUNNING) changes no indexed column.
 */
export const JOB_PHASES = ['ACTIVE', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;

/**
 * Legal transitions. RUNNING → PENDING is a retry waiting for its backoff or a job whose worker died;
 * FAILED → PENDING is an operator's replay from the dead-letter queue.
 */
export const TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  PENDING: ['RUNNING', 'CANCELLED', 'FAILED'],
  RUNNING: ['PENDING', 'COMPLETED', 'FAILED', 'CANCELLED'],
  COMPLETED: [],
  FAILED: ['PENDING'],
  CANCELLED: [],
};

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The statuses a job may be in for a move to `to` to be legal (for SQL `status = ANY($n)` guards). */
export function sourcesOf(to: JobStatus): JobStatus[] {
  return JOB_STATUSES.filter((from) => canTransition(from, to));
}

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}
