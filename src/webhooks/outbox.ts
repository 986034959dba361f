/**
 * The webhook outbox. A terminal status change of a job with a callback_url writes its delivery row in
 * the same SQL statement (a CTE of every status change, statusChangeSql in src/jobs/lifecycle.ts), so
 * the event commits or rolls back with the job's terminal state: a crash can neither lose it nor send it for a state that was rolled back.
 * The same statement wakes the dispatcher with pg_notify (delivered on commit).
 */

/** Channel that wakes dispatchers when deliveries become due (the payload is empty). */
export const WEBHOOKS_CHANNEL = 'longhaul_webhooks';

/** The event type of each terminal status. */
export const EVENT_TYPES = ['job.completed', 'job.failed', 'job.cancelled'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * The job as GET /v1/jobs/{id} shows it (src/jobs/model.ts `toResource`), built in SQL from the row
 * alias `j`. A test compares it with the API's answer so the two cannot drift apart.
 */
function jobResourceSql(j: string): string {
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

/**
 * A data-modifying CTE body that inserts one delivery per row of `updated` (a CTE returning the jobs
 * columns after the update) that reached a terminal status and has a callback URL, and notifies the
 * dispatchers. Use it as `…, webhooks AS (${outboxInsertSql('u')})` in the statement that changes the status.
 * The payload is the Standard Webhooks shape `{type, timestamp, data}`, stored as the exact bytes to sign.
 */
export function outboxInsertSql(updated: string): string {
  return `INSERT INTO webhook_deliveries (tenant_id, job_id, event_type, url, endpoint, payload)
    SELECT j.tenant_id, j.id, 'job.' || lower(j.status), j.callback_url, webhook_endpoint_key(j.tenant_id, j.callback_url),
           jsonb_build_object('type', 'job.' || lower(j.status),
                              'timestamp', webhook_iso(coalesce(j.finished_at, j.updated_at)),
                              'data', ${jobResourceSql('j')})::text
      FROM ${updated} j
     WHERE j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND j.callback_url IS NOT NULL
    RETURNING pg_notify('${WEBHOOKS_CHANNEL}', '')`;
}
