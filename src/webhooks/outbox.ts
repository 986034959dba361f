/**
 * The webhook outbox: what a job's event carries and the channel that announces it. A terminal status
 * change of a job with a callback_url writes its delivery row in the same SQL statement (a CTE of every
 * status change, statusChangeSql in src/jobs/lifecycle.ts, built from outboxInsertSql in ./store.ts,
 * which owns the table), so the event commits or rolls back with the job's terminal state: a crash can
 * neither lose it nor send it for a state that was rolled back. The same statement wakes the dispatcher
 * with pg_notify (delivered on commit).
 */

/** Channel that wakes dispatchers when deliveries become due (the payload is empty). */
export const WEBHOOKS_CHANNEL = 'longhaul_webhooks';

/**
 * The job as GET /v1/jobs/{id} shows it (src/jobs/model.ts `toResource`), built in SQL from the row
 * alias `j`. A test compares it with the API's answer so the two cannot drift apart.
 */
export function jobResourceSql(j: string): string {
  return `jsonb_build_object(
    'id', ${j}.id, 'type', ${j}.type, 'status', ${j}.status, 'input', ${j}.input, 'metadata', ${j}.metadata,
    'callback_url', ${j}.callback_url,
    'progress', jsonb_build_object('processed', ${j}.processed, 'total', ${j}.total,
       'percent', longhaul_progress_percent(${j}.processed, ${j}.total)),
    'attempts', ${j}.attempts, 'max_attempts', ${j}.max_attempts, 'result', ${j}.result, 'error', ${j}.error,
    'error_history', ${j}.error_history,
    'scheduled_for', webhook_iso(${j}.scheduled_for), 'priority', ${j}.priority,
    'timeout_seconds', ${j}.timeout_seconds, 'expires_at', webhook_iso(${j}.expires_at),
    'schedule_id', ${j}.schedule_id,
    'created_at', webhook_iso(${j}.created_at), 'started_at', webhook_iso(${j}.started_at),
    'updated_at', webhook_iso(${j}.updated_at), 'finished_at', webhook_iso(${j}.finished_at))`;
}
