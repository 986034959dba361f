/** The job as stored and as the API shows it (GET /v1/jobs/{id}, webhook `data`). */
import type { Json } from '../../packages/sdk/src/index.ts';
import type { JobStatus } from './state.ts';

/**
 * One entry of error_history. `failure`: the attempt failed and spent one of max_attempts. `lease_lost`:
 * its worker was lost and another took the job over, spending none (LONGHAUL_MAX_LEASE_LOSSES bounds them).
 * `timeout`: the job ran past its timeout_seconds; `expired`: it had not started by its expires_at. Both
 * fail the job for good.
 */
export type AttemptError = {
  kind: 'failure' | 'lease_lost' | 'timeout' | 'expired';
  message: string;
  name?: string;
  attempt: number;
  permanent?: boolean;
  /** For `lease_lost`: the job's lost leases so far, this one included. */
  lease_losses?: number;
  at: string;
};

/** Job priorities a request may give: higher starts first; 0 when none is given. */
export const PRIORITY_MIN = -100;
export const PRIORITY_MAX = 100;
/** Largest `timeout_seconds` or `expire_after_seconds` any request may ask for (a job type may allow less). */
export const MAX_TIME_LIMIT_SECONDS = 365 * 24 * 60 * 60;

export interface JobRow {
  id: string;
  tenant_id: string;
  type: string;
  status: JobStatus;
  input: Json;
  metadata: Json | null;
  callback_url: string | null;
  max_attempts: number;
  attempts: number;
  processed: number;
  total: number | null;
  /** Progress in percent, from `longhaul_progress_percent` (sql/016), the one definition of it. */
  percent: number | null;
  result: Json | null;
  error: Json | null;
  error_history: AttemptError[];
  /** When the job may start (its first execution's pg-boss start_after); null: at once. */
  scheduled_for: Date | null;
  priority: number;
  /** Longest time from the job's first start to its end, in seconds; null: no limit. */
  timeout_seconds: number | null;
  /** A job not started by then fails as `expired`; null: it waits as long as it takes. */
  expires_at: Date | null;
  /** The recurring schedule that created the job. */
  schedule_id: string | null;
  created_at: Date;
  started_at: Date | null;
  updated_at: Date;
  finished_at: Date | null;
}

/** Columns of JobRow, for SELECTs. */
export const JOB_COLUMNS = `id, tenant_id, type, status, input, metadata, callback_url, max_attempts, attempts,
  processed, total, longhaul_progress_percent(processed, total) AS percent, result, error, error_history,
  scheduled_for, priority, timeout_seconds, expires_at, schedule_id, created_at, started_at, updated_at, finished_at`;

export interface JobResource {
  id: string;
  type: string;
  status: JobStatus;
  input: Json;
  metadata: Json | null;
  callback_url: string | null;
  progress: { processed: number; total: number | null; percent: number | null };
  attempts: number;
  max_attempts: number;
  result: Json | null;
  error: Json | null;
  /** Every failed attempt and every lost worker, oldest first. */
  error_history: AttemptError[];
  scheduled_for: string | null;
  priority: number;
  timeout_seconds: number | null;
  expires_at: string | null;
  schedule_id: string | null;
  created_at: string;
  started_at: string | null;
  updated_at: string;
  finished_at: string | null;
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export function toResource(j: JobRow): JobResource {
  return {
    id: j.id,
    type: j.type,
    status: j.status,
    input: j.input,
    metadata: j.metadata,
    callback_url: j.callback_url,
    progress: { processed: j.processed, total: j.total, percent: j.percent },
    attempts: j.attempts,
    max_attempts: j.max_attempts,
    result: j.result,
    error: j.error,
    error_history: j.error_history,
    scheduled_for: iso(j.scheduled_for),
    priority: j.priority,
    timeout_seconds: j.timeout_seconds,
    expires_at: iso(j.expires_at),
    schedule_id: j.schedule_id,
    created_at: j.created_at.toISOString(),
    started_at: iso(j.started_at),
    updated_at: j.updated_at.toISOString(),
    finished_at: iso(j.finished_at),
  };
}

/** The job as it was when created: what an Idempotency-Key replay answers with, whatever happened since. */
export function asCreated(j: JobRow): JobRow {
  return {
    ...j,
    status: 'PENDING',
    attempts: 0,
    processed: 0,
    total: null,
    percent: null,
    result: null,
    error: null,
    error_history: [],
    started_at: null,
    updated_at: j.created_at,
    finished_at: null,
  };
}
