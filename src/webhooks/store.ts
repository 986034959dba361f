/** SQL of the webhook_deliveries and webhook_attempts tables: the outbox insert, claiming, recording, listing, replaying. */
import type { Queryable } from '../db/pool.ts';
import type { Json } from '../../packages/sdk/src/index.ts';
import { addEndpointCountsSql, type BreakerState } from './endpoints.ts';
import { jobResourceSql, WEBHOOKS_CHANNEL } from './outbox.ts';

export type DeliveryStatus = 'PENDING' | 'SUCCEEDED' | 'DEAD';

/** A claimed delivery with what is needed to sign it (read in the claiming statement, so always current). */
export interface ClaimedDelivery {
  id: string;
  webhook_id: string;
  tenant_id: string;
  url: string;
  endpoint: string;
  payload: string;
  job_id: string;
  /** Attempts made since the delivery was created or last replayed. */
  attempts_made: number;
  /** The delivery was replayed from the dead-letter queue. */
  replayed: boolean;
  created_at: Date;
  endpoint_state: BreakerState | null;
  /** The trace context stored with the job (src/observability/tracing.ts), which the attempt's span continues. */
  trace_context: Json | null;
  scheme: 'v1' | 'v1a';
  secrets: string[];
  key_ids: string[];
  key_pems: string[];
}

/**
 * `pending`: each endpoint with pending deliveries and its earliest next_attempt_at, found by a loose scan
 * of webhook_deliveries_endpoint_due (one probe per endpoint, whatever its backlog). For a WITH RECURSIVE.
 */
const PENDING_ENDPOINTS_CTE = `pending AS (
       (SELECT d.endpoint, d.next_attempt_at FROM webhook_deliveries d
         WHERE d.status = 'PENDING' ORDER BY d.endpoint, d.next_attempt_at LIMIT 1)
       UNION ALL
       SELECT n.endpoint, n.next_attempt_at
         FROM pending p CROSS JOIN LATERAL (
           SELECT d.endpoint, d.next_attempt_at FROM webhook_deliveries d
            WHERE d.status = 'PENDING' AND d.endpoint > p.endpoint ORDER BY d.endpoint, d.next_attempt_at LIMIT 1) n)`;

/**
 * Claims up to `limit` due deliveries for `token`, earliest due first, at most `free` per endpoint (`busy`
 * lists the endpoints with deliveries held here and how many more each may take; others take
 * `perEndpoint`). Endpoints whose breaker is open (or probing) are skipped. A claimed row's
 * next_attempt_at becomes the end of the lease: when the dispatcher dies, the row is due again then.
 *
 * Rows are picked per endpoint, not from one scan of the earliest due rows: such a scan, however wide,
 * can be filled by the backlog of an endpoint that may take no more (or only a few), and then every
 * other endpoint starves. The endpoints with pending deliveries are found by a loose scan of
 * webhook_deliveries_endpoint_due, one probe per endpoint whatever its backlog (so the cost grows with
 * the number of endpoints with pending deliveries; bench/RESULTS.md, Webhooks). Of those due, the `limit`
 * earliest each give their earliest rows, at most their `free` and their fair share of `limit`, so
 * the rows locked stay within about twice `limit`; rows another dispatcher is claiming are skipped.
 */
export async function claimDeliveries(
  db: Queryable,
  opts: { token: string; limit: number; perEndpoint: number; busy: Map<string, number>; leaseSeconds: number },
): Promise<ClaimedDelivery[]> {
  const { rows } = await db.query<ClaimedDelivery>(
    `WITH RECURSIVE busy AS (SELECT * FROM unnest($1::text[], $2::int[]) AS b(endpoint, free)),
     ${PENDING_ENDPOINTS_CTE},
     due AS (
       SELECT p.endpoint, least(coalesce(b.free, $3::int), ceil($4::float8 / least(count(*) OVER (), $4::int))::int) AS take
         FROM pending p LEFT JOIN busy b ON b.endpoint = p.endpoint
        WHERE p.next_attempt_at <= now() AND coalesce(b.free, $3::int) > 0
          AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                           WHERE e.endpoint = p.endpoint AND (e.disabled_at IS NOT NULL OR (e.state <> 'closed' AND e.retry_at > now())))
        ORDER BY p.next_attempt_at
        LIMIT $4::int),
     cand AS (
       SELECT c.id, c.next_attempt_at
         FROM due CROSS JOIN LATERAL (
           SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
            WHERE d.endpoint = due.endpoint AND d.status = 'PENDING' AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at
            LIMIT due.take
            FOR UPDATE OF d SKIP LOCKED) c),
     picked AS (SELECT id FROM cand ORDER BY next_attempt_at LIMIT $4::int)
     UPDATE webhook_deliveries d
        SET claim_token = $5, next_attempt_at = now() + make_interval(secs => $6), updated_at = now()
       FROM picked p
      WHERE d.id = p.id
     RETURNING d.id, d.webhook_id, d.tenant_id, d.job_id, d.url, d.endpoint, d.payload, d.attempts - d.replay_base AS attempts_made,
       d.replay_base > 0 AS replayed, d.created_at,
       (SELECT e.state FROM webhook_endpoints e WHERE e.endpoint = d.endpoint) AS endpoint_state,
       (SELECT j.trace_context FROM jobs j WHERE j.id = d.job_id) AS trace_context,
       coalesce((SELECT s.scheme FROM webhook_settings s WHERE s.tenant_id = d.tenant_id), 'v1') AS scheme,
       ARRAY(SELECT w.secret FROM webhook_secrets w WHERE w.tenant_id = d.tenant_id AND (w.expires_at IS NULL OR w.expires_at > now())
              ORDER BY w.created_at DESC) AS secrets,
       ARRAY(SELECT k.kid FROM webhook_signing_keys k WHERE k.tenant_id = d.tenant_id AND (k.expires_at IS NULL OR k.expires_at > now())
              ORDER BY k.created_at DESC) AS key_ids,
       ARRAY(SELECT k.private_pem FROM webhook_signing_keys k WHERE k.tenant_id = d.tenant_id AND (k.expires_at IS NULL OR k.expires_at > now())
              ORDER BY k.created_at DESC) AS key_pems`,
    [[...opts.busy.keys()], [...opts.busy.values()], opts.perEndpoint, opts.limit, opts.token, opts.leaseSeconds],
  );
  return rows;
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

/**
 * A data-modifying CTE body that moves the waiting (pending, unclaimed) deliveries of each endpoint in
 * `opened`, a relation of (endpoint, retry_at), to no earlier than its retry_at.
 */
export function pushWaitingPastSql(opened: string): string {
  return `UPDATE webhook_deliveries d SET next_attempt_at = greatest(d.next_attempt_at, ${opened}.retry_at)
         FROM ${opened} WHERE d.endpoint = ${opened}.endpoint AND d.status = 'PENDING' AND d.claim_token IS NULL`;
}

/** A data-modifying CTE body that makes the waiting deliveries of each endpoint in `enabled` (endpoint) due now. */
export function makeWaitingDueSql(enabled: string): string {
  return `UPDATE webhook_deliveries d SET next_attempt_at = now(), updated_at = now()
         FROM ${enabled} WHERE d.endpoint = ${enabled}.endpoint AND d.status = 'PENDING' AND d.claim_token IS NULL
       RETURNING d.id`;
}

/** Gives claimed deliveries back unattempted (due now, nothing spent), e.g. those behind a probe. */
export async function releaseDeliveries(db: Queryable, ids: string[], token: string): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `UPDATE webhook_deliveries SET claim_token = NULL, next_attempt_at = now(), updated_at = now()
      WHERE id = ANY($1::uuid[]) AND claim_token = $2`,
    [ids, token],
  );
}

/** The outcome of one attempt, as recorded. */
export interface AttemptRecord {
  id: string;
  token: string;
  endpoint: string;
  /** What the delivery becomes. */
  status: DeliveryStatus;
  /** Seconds until the next attempt, when status is PENDING. */
  delaySeconds: number;
  startedAt: Date;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  response: string | null;
  /** Counts in the endpoint's statistics (refusals by our own SSRF guard do not). */
  countsForEndpoint: boolean;
  ok: boolean;
  /** The endpoint answered 410 Gone: it is disabled for its tenant until enabled again. */
  gone: boolean;
}

/**
 * Records a batch of attempts in one statement: each delivery's new status, its attempt log row and the
 * endpoints' counters. A row whose claim was lost (its lease ran out and another dispatcher took it) is
 * not touched. Returns the ids that were recorded.
 */
export async function recordAttempts(
  db: Queryable,
  batch: AttemptRecord[],
  windows: Map<string, { total: number; failures: number }>,
): Promise<Set<string>> {
  const endpoints = new Map<string, { ok: number; failed: number; gone: boolean; lastOk: boolean | undefined }>();
  for (const r of batch) {
    if (!r.countsForEndpoint) continue;
    const e = endpoints.get(r.endpoint) ?? { ok: 0, failed: 0, gone: false, lastOk: undefined };
    if (r.ok) e.ok++;
    else e.failed++;
    e.gone ||= r.gone;
    endpoints.set(r.endpoint, e);
  }
  // In one order in every dispatcher: two batches upserting the same endpoints in opposite orders would
  // deadlock (Postgres ends one, and its batch is retried a second later).
  const eps = [...endpoints.keys()].sort();
  // A batch may hold two results of one delivery: one of a claim whose lease ran out while its result
  // could not be recorded (during an outage), and one of the claim that sent it again. Only the live
  // claim's is recorded, joined by its token.
  const { rows } = await db.query<{ id: string }>(
    `WITH r AS (
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[])
         AS r(id, token, status, delay_s, started_at, duration_ms, status_code, error, response)),
     upd AS (
       UPDATE webhook_deliveries d
          SET attempts = d.attempts + 1, status = r.status, claim_token = NULL,
              next_attempt_at = CASE WHEN r.status = 'PENDING' THEN now() + make_interval(secs => r.delay_s) ELSE now() END,
              last_status_code = r.status_code, last_error = r.error, updated_at = now(),
              delivered_at = CASE WHEN r.status = 'SUCCEEDED' THEN now() ELSE d.delivered_at END,
              dead_at = CASE WHEN r.status = 'DEAD' THEN now() END
         FROM r
        WHERE d.id = r.id AND d.claim_token = r.token
       RETURNING d.id, d.attempts, r.token),
     counts AS (
       SELECT * FROM unnest($10::text[], $11::int[], $12::int[], $13::bool[], $14::int[], $15::int[])
         AS x(endpoint, ok, failed, gone, recent_total, recent_failures)),
     ep AS (${addEndpointCountsSql('counts')})
     INSERT INTO webhook_attempts (delivery_id, n, started_at, duration_ms, status_code, error, response)
     SELECT upd.id, upd.attempts, r.started_at, r.duration_ms, r.status_code, r.error, r.response
       FROM upd JOIN r ON r.id = upd.id AND r.token = upd.token
     RETURNING delivery_id AS id`,
    [
      batch.map((r) => r.id),
      batch.map((r) => r.token),
      batch.map((r) => r.status),
      batch.map((r) => r.delaySeconds),
      batch.map((r) => r.startedAt),
      batch.map((r) => r.durationMs),
      batch.map((r) => r.statusCode),
      batch.map((r) => r.error),
      batch.map((r) => r.response),
      eps,
      eps.map((e) => endpoints.get(e)?.ok ?? 0),
      eps.map((e) => endpoints.get(e)?.failed ?? 0),
      eps.map((e) => endpoints.get(e)?.gone ?? false),
      eps.map((e) => windows.get(e)?.total ?? 0),
      eps.map((e) => windows.get(e)?.failures ?? 0),
    ],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * Seconds until the earliest PENDING delivery may be claimed (negative when overdue): when it is due, or
 * when its endpoint's breaker cool-down ends if that is later. Undefined when none waits.
 */
export async function secondsUntilNextDue(db: Queryable): Promise<number | undefined> {
  // A delivery of an endpoint whose breaker holds it (not closed, cool-down running) is claimable only
  // once the cool-down ends, however overdue the delivery: counting it as due now would have every
  // dispatcher claim in vain, at the idle floor, for the whole cool-down of every failing endpoint.
  // One of a disabled endpoint is not due at all until the endpoint is enabled (which notifies).
  const { rows } = await db.query<{ s: number | null }>(
    `WITH RECURSIVE ${PENDING_ENDPOINTS_CTE}
     SELECT extract(epoch FROM min(greatest(p.next_attempt_at, CASE WHEN e.state <> 'closed' THEN e.retry_at END)) - now())::float8 AS s
       FROM pending p LEFT JOIN webhook_endpoints e ON e.endpoint = p.endpoint
      WHERE e.disabled_at IS NULL`,
  );
  return rows[0]?.s ?? undefined;
}

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  job_id: string;
  event_type: string;
  url: string;
  endpoint: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date;
  last_status_code: number | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  delivered_at: Date | null;
  dead_at: Date | null;
}

export interface AttemptRow {
  delivery_id: string;
  n: number;
  started_at: Date;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
  response: string | null;
}

const DELIVERY_COLUMNS = `id, webhook_id, job_id, event_type, url, split_part(endpoint, ' ', 2) AS endpoint, status, attempts, next_attempt_at, last_status_code,
  last_error, created_at, updated_at, delivered_at, dead_at`;

export async function attemptsOf(db: Queryable, deliveryIds: string[]): Promise<Map<string, AttemptRow[]>> {
  const out = new Map<string, AttemptRow[]>();
  if (deliveryIds.length === 0) return out;
  const { rows } = await db.query<AttemptRow>(
    `SELECT delivery_id, n, started_at, duration_ms, status_code, error, response FROM webhook_attempts
      WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, n`,
    [deliveryIds],
  );
  for (const r of rows) out.set(r.delivery_id, [...(out.get(r.delivery_id) ?? []), r]);
  return out;
}

/**
 * A job's deliveries, oldest first; undefined when the tenant has no such job. A job without deliveries
 * gives one row of nulls from the outer join, dropped here.
 */
export async function deliveriesOfJob(
  db: Queryable,
  tenantId: string,
  jobId: string,
): Promise<DeliveryRow[] | undefined> {
  const { rows } = await db.query<DeliveryRow | { [K in keyof DeliveryRow]: null }>(
    `SELECT d.* FROM jobs j LEFT JOIN LATERAL (
       SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = j.id AND tenant_id = j.tenant_id) d ON true
      WHERE j.id = $1 AND j.tenant_id = $2
      ORDER BY d.created_at, d.id`,
    [jobId, tenantId],
  );
  if (rows.length === 0) return undefined;
  return rows.filter((r): r is DeliveryRow => r.id !== null);
}

export async function getDelivery(db: Queryable, tenantId: string, id: string): Promise<DeliveryRow | undefined> {
  const { rows } = await db.query<DeliveryRow>(
    `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND tenant_id = $2`,
    [id, tenantId],
  );
  return rows[0];
}

export interface DeliveryFilter {
  status?: DeliveryStatus | undefined;
  /** Inclusive lower bound on created_at (when the event happened). */
  since?: Date | undefined;
  /** Exclusive upper bound on created_at. */
  until?: Date | undefined;
  limit: number;
  /** Exclusive keyset position: (created_at, id) of the last row of the previous page. */
  after?: { createdAt: string; id: string } | undefined;
}

/** Newest first, keyset-paginated on (created_at, id). */
export async function listDeliveries(
  db: Queryable,
  tenantId: string,
  f: DeliveryFilter,
): Promise<{ rows: DeliveryRow[]; next: { createdAt: string; id: string } | null }> {
  const { rows } = await db.query<DeliveryRow & { created_key: string }>(
    `SELECT ${DELIVERY_COLUMNS}, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key
       FROM webhook_deliveries
      WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
        AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::timestamptz IS NULL OR created_at < $4)
        AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid))
      ORDER BY created_at DESC, id DESC
      LIMIT $7`,
    [
      tenantId,
      f.status ?? null,
      f.since ?? null,
      f.until ?? null,
      f.after?.createdAt ?? null,
      f.after?.id ?? null,
      f.limit + 1,
    ],
  );
  const more = rows.length > f.limit;
  const page = more ? rows.slice(0, f.limit) : rows;
  const last = page.at(-1);
  return {
    rows: page.map(({ created_key: _k, ...r }) => r),
    next: more && last !== undefined ? { createdAt: last.created_key, id: last.id } : null,
  };
}

/**
 * Puts finished deliveries back in the queue, due now, with the same webhook-id and a fresh retry
 * schedule (their attempt log is kept). `ids` limits it to those; otherwise every DEAD one in the range.
 */
export async function redeliver(
  db: Queryable,
  tenantId: string,
  sel: { ids: string[] } | { since?: Date | undefined; until?: Date | undefined },
): Promise<string[]> {
  const byId = 'ids' in sel;
  const { rows } = await db.query<{ id: string }>(
    `UPDATE webhook_deliveries
        SET status = 'PENDING', replay_base = attempts, next_attempt_at = now(), claim_token = NULL, dead_at = NULL, updated_at = now()
      WHERE tenant_id = $1
        AND CASE WHEN $2 THEN id = ANY($3::uuid[]) AND status <> 'PENDING'
                 ELSE status = 'DEAD' AND ($4::timestamptz IS NULL OR created_at >= $4) AND ($5::timestamptz IS NULL OR created_at < $5) END
     RETURNING id, pg_notify('${WEBHOOKS_CHANNEL}', '')`,
    [tenantId, byId, byId ? sel.ids : [], byId ? null : (sel.since ?? null), byId ? null : (sel.until ?? null)],
  );
  return rows.map((r) => r.id);
}

/** Counting stops here: the console shows "more than" past it. */
export const DEAD_COUNT_CAP = 10_000;

/** DEAD deliveries of a tenant, or of every tenant (each through its own index), counted up to the cap. */
export async function countDeadDeliveries(db: Queryable, tenantId: string | undefined): Promise<number> {
  const capped = (tenant: string) =>
    `SELECT count(*) AS n FROM (SELECT 1 FROM webhook_deliveries d WHERE d.tenant_id = ${tenant} AND d.status = 'DEAD' LIMIT ${DEAD_COUNT_CAP + 1}) s`;
  const { rows } = await db.query<{ n: number }>(
    tenantId === undefined
      ? `SELECT coalesce(sum(c.n), 0)::int AS n FROM tenants t CROSS JOIN LATERAL (${capped('t.id')}) c`
      : `SELECT n::int FROM (${capped('$1')}) c`,
    tenantId === undefined ? [] : [tenantId],
  );
  return Math.min(rows[0]?.n ?? 0, DEAD_COUNT_CAP + 1);
}

/** Each endpoint's attempts over the last hour for a tenant: how many, how many succeeded, mean duration. */
export async function endpointLatency(
  db: Queryable,
  tenantId: string,
): Promise<Map<string, { attempts: number; succeeded: number; meanMs: number }>> {
  const { rows } = await db.query<{ endpoint: string; attempts: number; succeeded: number; mean_ms: number }>(
    `SELECT split_part(d.endpoint, ' ', 2) AS endpoint, count(*)::int AS attempts,
            count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299)::int AS succeeded,
            round(avg(a.duration_ms))::int AS mean_ms
       FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id
      WHERE d.tenant_id = $1 AND d.updated_at > now() - interval '1 hour' AND a.started_at > now() - interval '1 hour'
      GROUP BY 1`,
    [tenantId],
  );
  return new Map(rows.map((r) => [r.endpoint, { attempts: r.attempts, succeeded: r.succeeded, meanMs: r.mean_ms }]));
}
