/**
 * Per-tenant limits (the `tenant_limits` table): running jobs at once, pending jobs at most, and a
 * submission rate. The running limit is the worker's to enforce; the other two are checked here, inside
 * the transaction that inserts a limited tenant's jobs, with the tenant's row locked first: every API
 * process counts the same pending jobs and spends the same bucket, and a refused submission rolls back.
 *
 * The rate is a GCRA: one timestamp, the theoretical arrival time (TAT), that each admitted job moves on
 * by window / limit. A burst of `limit` jobs fits at once; after that, one more every window / limit.
 */
import type { Pool, Queryable } from '../db/pool.ts';

export interface SubmissionRate {
  /** Jobs accepted per window. */
  limit: number;
  window_seconds: number;
}

export interface TenantLimits {
  tenant_id: string;
  /** Jobs of the tenant running at once across all workers; null: LONGHAUL_TENANT_CONCURRENCY. */
  max_running_jobs: number | null;
  /** PENDING jobs (queued or scheduled) the tenant may have at once; null: no bound. */
  max_pending_jobs: number | null;
  submission_rate: SubmissionRate | null;
  updated_at: Date | null;
}

/** A change to a tenant's limits: an absent field keeps its value, null lifts the limit. */
export type LimitsPatch = Partial<Pick<TenantLimits, 'max_running_jobs' | 'max_pending_jobs' | 'submission_rate'>>;

const COLUMNS = `tenant_id, max_running_jobs, max_pending_jobs,
  CASE WHEN rate_limit IS NULL THEN NULL
       ELSE json_build_object('limit', rate_limit, 'window_seconds', rate_window_seconds) END AS submission_rate,
  updated_at`;

/** A tenant's limits (all null when none were set), or undefined when there is no such tenant. */
export async function getLimits(db: Queryable, tenantId: string): Promise<TenantLimits | undefined> {
  const { rows } = await db.query<TenantLimits>(
    `SELECT t.id AS tenant_id, l.max_running_jobs, l.max_pending_jobs,
            CASE WHEN l.rate_limit IS NULL THEN NULL
                 ELSE json_build_object('limit', l.rate_limit, 'window_seconds', l.rate_window_seconds) END AS submission_rate,
            l.updated_at
       FROM tenants t LEFT JOIN tenant_limits l ON l.tenant_id = t.id WHERE t.id = $1`,
    [tenantId],
  );
  return rows[0];
}

/** Channel that tells the workers a tenant's running limit changed; payload is the tenant id. */
export const RUNNING_LIMIT_CHANNEL = 'longhaul_running_limit';

/**
 * Changes a tenant's limits (a new rate starts with a full bucket); undefined when there is no such tenant.
 * A changed running limit is announced on RUNNING_LIMIT_CHANNEL once committed, before this returns.
 */
export async function setLimits(
  db: Queryable,
  tenantId: string,
  patch: LimitsPatch,
): Promise<TenantLimits | undefined> {
  const has = (k: keyof LimitsPatch) => patch[k] !== undefined;
  const rate = patch.submission_rate;
  const { rows } = await db.query<TenantLimits>(
    `INSERT INTO tenant_limits AS l (tenant_id, max_running_jobs, max_pending_jobs, rate_limit, rate_window_seconds)
     SELECT id, $2, $3, $4, $5 FROM tenants WHERE id = $1
     ON CONFLICT (tenant_id) DO UPDATE SET
       max_running_jobs = CASE WHEN $6 THEN excluded.max_running_jobs ELSE l.max_running_jobs END,
       max_pending_jobs = CASE WHEN $7 THEN excluded.max_pending_jobs ELSE l.max_pending_jobs END,
       rate_limit = CASE WHEN $8 THEN excluded.rate_limit ELSE l.rate_limit END,
       rate_window_seconds = CASE WHEN $8 THEN excluded.rate_window_seconds ELSE l.rate_window_seconds END,
       rate_tat = CASE WHEN $8 THEN NULL ELSE l.rate_tat END,
       updated_at = now()
     RETURNING ${COLUMNS}`,
    [
      tenantId,
      patch.max_running_jobs ?? null,
      patch.max_pending_jobs ?? null,
      rate?.limit ?? null,
      rate?.window_seconds ?? null,
      has('max_running_jobs'),
      has('max_pending_jobs'),
      has('submission_rate'),
    ],
  );
  if (rows[0] !== undefined && has('max_running_jobs'))
    await db.query('SELECT pg_notify($1, $2)', [RUNNING_LIMIT_CHANNEL, tenantId]);
  return rows[0];
}

/** The limits a submission is checked against, read with the tenant's row locked. */
export interface SubmissionGate {
  tenantId: string;
  maxPending: number | null;
  rate: SubmissionRate | null;
  /** The database's clock when the row was locked, in ms. */
  nowMs: number;
  /** The bucket's theoretical arrival time, in ms (never before now). */
  tatMs: number;
}

/** What a limit answers: admitted, or refused with how long to wait; with the figures for the RateLimit headers. */
export interface Verdict {
  admitted: boolean;
  /** The limit that refused: the submission rate, or the pending jobs. */
  refusedBy?: 'rate' | 'pending';
  /** Seconds until a retry can succeed (a lower bound for the pending limit). */
  retryAfterSeconds: number;
  policies: Array<{
    name: 'rate' | 'pending';
    quota: number;
    windowSeconds?: number;
    remaining: number;
    resetSeconds: number;
  }>;
}

/** Whether the tenant `tenantSql` (an SQL expression) has a pending or rate limit: SQL, for a statement that writes only for tenants without. */
export function hasLimitsSql(tenantSql: string): string {
  return `EXISTS (SELECT 1 FROM tenant_limits WHERE tenant_id = ${tenantSql}
                    AND (max_pending_jobs IS NOT NULL OR rate_limit IS NOT NULL))`;
}

/**
 * Locks a tenant's limits row for the submission's transaction (serialising its submissions across
 * processes) and reads it; undefined when the tenant has no pending or rate limit.
 */
export async function lockGate(db: Queryable, tenantId: string): Promise<SubmissionGate | undefined> {
  const { rows } = await db.query<{
    max_pending_jobs: number | null;
    rate_limit: number | null;
    rate_window_seconds: number | null;
    now_ms: number;
    tat_ms: number;
  }>(
    `SELECT max_pending_jobs, rate_limit, rate_window_seconds,
            extract(epoch FROM clock_timestamp()) * 1000 AS now_ms,
            extract(epoch FROM greatest(coalesce(rate_tat, clock_timestamp()), clock_timestamp())) * 1000 AS tat_ms
       FROM tenant_limits
      WHERE tenant_id = $1 AND (max_pending_jobs IS NOT NULL OR rate_limit IS NOT NULL)
      FOR UPDATE`,
    [tenantId],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  return {
    tenantId,
    maxPending: row.max_pending_jobs,
    rate:
      row.rate_limit === null || row.rate_window_seconds === null
        ? null
        : { limit: row.rate_limit, window_seconds: row.rate_window_seconds },
    nowMs: Number(row.now_ms),
    tatMs: Number(row.tat_ms),
  };
}

/** Seconds to wait for the pending count to fall: jobs start within the pickup time when slots are free. */
const PENDING_RETRY_AFTER_SECONDS = 1;

/**
 * Whether `created` more jobs fit, run in the transaction that inserted them (after lockGate): the
 * pending count then includes them. Admitting spends the bucket; refusing leaves the caller to roll back.
 */
export async function admit(db: Queryable, gate: SubmissionGate, created: number): Promise<Verdict> {
  const policies: Verdict['policies'] = [];
  let pendingOver = false;
  if (gate.maxPending !== null) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (
         SELECT 1 FROM jobs WHERE tenant_id = $1 AND phase = 'ACTIVE' AND status = 'PENDING' LIMIT $2) s`,
      [gate.tenantId, gate.maxPending + 1],
    );
    const pending = rows[0]?.n ?? 0;
    pendingOver = pending > gate.maxPending;
    policies.push({
      name: 'pending',
      quota: gate.maxPending,
      remaining: Math.max(0, gate.maxPending - pending),
      resetSeconds: pendingOver ? PENDING_RETRY_AFTER_SECONDS : 0,
    });
  }
  let rateWaitMs = 0;
  if (gate.rate !== null) {
    const windowMs = gate.rate.window_seconds * 1000;
    const intervalMs = windowMs / gate.rate.limit;
    const tatAfter = gate.tatMs + intervalMs * created;
    rateWaitMs = Math.max(0, tatAfter - gate.nowMs - windowMs);
    const tat = rateWaitMs > 0 || pendingOver ? gate.tatMs : tatAfter;
    policies.push({
      name: 'rate',
      quota: gate.rate.limit,
      windowSeconds: gate.rate.window_seconds,
      remaining: Math.max(0, Math.floor((windowMs - (tat - gate.nowMs)) / intervalMs)),
      resetSeconds: Math.ceil(Math.max(rateWaitMs, tat - gate.nowMs) / 1000),
    });
    if (rateWaitMs === 0 && !pendingOver)
      await db.query('UPDATE tenant_limits SET rate_tat = to_timestamp($2 / 1000.0) WHERE tenant_id = $1', [
        gate.tenantId,
        tatAfter,
      ]);
  }
  if (rateWaitMs > 0)
    return { admitted: false, refusedBy: 'rate', retryAfterSeconds: Math.ceil(rateWaitMs / 1000), policies };
  if (pendingOver)
    return { admitted: false, refusedBy: 'pending', retryAfterSeconds: PENDING_RETRY_AFTER_SECONDS, policies };
  return { admitted: true, retryAfterSeconds: 0, policies };
}

/** Tenants with a `max_running_jobs`, and it: the workers hold each below it (src/worker/fair-share.ts). */
export async function runningLimits(db: Queryable): Promise<Map<string, number>> {
  const { rows } = await db.query<{ tenant_id: string; n: number }>(
    'SELECT tenant_id, max_running_jobs AS n FROM tenant_limits WHERE max_running_jobs IS NOT NULL',
  );
  return new Map(rows.map((r) => [r.tenant_id, r.n]));
}

/**
 * Which tenants have a pending or rate limit, so that the others' submissions skip the gate (and
 * keep the one-statement path). Read at most once per `ttlMs` per process; the process that changes
 * a limit calls `refresh()`, others see it within `ttlMs`.
 */
export class LimitedTenants {
  readonly #pool: Pool;
  readonly #ttlMs: number;
  #ids = new Set<string>();
  #until = 0;
  #loading: Promise<void> | undefined;

  constructor(pool: Pool, ttlMs: number) {
    this.#pool = pool;
    this.#ttlMs = ttlMs;
  }

  async has(tenantId: string): Promise<boolean> {
    if (Date.now() >= this.#until) await (this.#loading ??= this.#load().finally(() => (this.#loading = undefined)));
    return this.#ids.has(tenantId);
  }

  /** Reads the set again now (after this process changed a limit). */
  async refresh(): Promise<void> {
    await this.#load();
  }

  async #load(): Promise<void> {
    const { rows } = await this.#pool.query<{ tenant_id: string }>(
      'SELECT tenant_id FROM tenant_limits WHERE max_pending_jobs IS NOT NULL OR rate_limit IS NOT NULL',
    );
    this.#ids = new Set(rows.map((r) => r.tenant_id));
    this.#until = Date.now() + this.#ttlMs;
  }
}
