/**
 * Operator alerts: a condition (a stalled job, a queue waiting too long, a dead webhook delivery) is
 * raised once and cleared once, however many processes watch it. The `alerts` table is the arbiter:
 * only the process whose statement flips a row's state reports it. A report goes to the log (error
 * level when raised), to Prometheus, and to every registered sink (e.g. a signed webhook).
 */
import client from 'prom-client';
import type { Queryable } from '../db/pool.ts';
import type { Json } from '../../packages/sdk/src/index.ts';
import type { Logger } from '../observability/logger.ts';
import { readGauge, type Registry } from '../observability/metrics.ts';

export interface AlertEvent {
  state: 'raised' | 'cleared';
  /** Identifies the condition, e.g. `job-stalled:<job id>`; one alert per key at a time. */
  key: string;
  /** The kind of condition, e.g. `job-stalled`, `jobs-pending`, `delivery-dead`. */
  kind: string;
  message: string;
  details: { [key: string]: Json };
  /** When the condition was raised (for a clear, when it had been raised). */
  raisedAt: Date;
  clearedAt: Date | null;
}

/** Somewhere alerts are delivered besides the log and the metrics. A failing sink is logged and skipped. */
export interface AlertSink {
  name: string;
  send(event: AlertEvent): Promise<void>;
}

export interface RaiseOptions {
  kind: string;
  message: string;
  details?: { [key: string]: Json };
}

export interface AlertRow {
  key: string;
  kind: string;
  message: string;
  details: { [key: string]: Json };
  raised_at: Date;
  cleared_at: Date | null;
}

/** Alerts raised and not cleared, newest first; for a tenant, only those naming it (details.tenant_id). */
export async function activeAlerts(db: Queryable, tenantId: string | undefined, limit: number): Promise<AlertRow[]> {
  const { rows } = await db.query<AlertRow>(
    `SELECT key, kind, message, details, raised_at, cleared_at FROM alerts
      WHERE cleared_at IS NULL AND ($1::text IS NULL OR details->>'tenant_id' = $1)
      ORDER BY raised_at DESC, key LIMIT $2`,
    [tenantId ?? null, limit],
  );
  return rows;
}

export class Alerts {
  readonly #db: Queryable;
  readonly #log: Logger;
  readonly #sinks: AlertSink[] = [];
  readonly #raised: client.Counter<'kind'>;
  readonly #cleared: client.Counter<'kind'>;

  constructor(db: Queryable, log: Logger, registry: Registry) {
    this.#db = db;
    this.#log = log;
    const existing = registry.getSingleMetric('longhaul_alerts_raised_total');
    // One registry per service; a second Alerts on the same registry shares its counters.
    this.#raised =
      (existing as client.Counter<'kind'> | undefined) ??
      new client.Counter({
        name: 'longhaul_alerts_raised_total',
        help: 'Alerts raised, by kind',
        labelNames: ['kind'],
        registers: [registry],
      });
    this.#cleared =
      (registry.getSingleMetric('longhaul_alerts_cleared_total') as client.Counter<'kind'> | undefined) ??
      new client.Counter({
        name: 'longhaul_alerts_cleared_total',
        help: 'Alerts cleared, by kind',
        labelNames: ['kind'],
        registers: [registry],
      });
    readGauge(registry, {
      name: 'longhaul_alerts_active',
      help: 'Alerts raised and not yet cleared, by kind (all processes)',
      labelNames: ['kind'] as const,
      read: async () =>
        (
          await db.query<{ kind: string; n: number }>(
            'SELECT kind, count(*)::int AS n FROM alerts WHERE cleared_at IS NULL GROUP BY kind',
          )
        ).rows,
      show: (g, rows) => {
        for (const r of rows) g.set({ kind: r.kind }, r.n);
      },
    });
  }

  /** Adds a sink; every later raise and clear is sent to it. */
  addSink(sink: AlertSink): void {
    this.#sinks.push(sink);
  }

  /** Raises the alert `key` unless it is already raised. Returns true if this call raised it. */
  async raise(key: string, opts: RaiseOptions): Promise<boolean> {
    const { rows } = await this.#db.query<AlertRow>(
      `INSERT INTO alerts (key, kind, message, details) VALUES ($1, $2, $3, $4)
       ON CONFLICT (key) DO UPDATE SET kind = EXCLUDED.kind, message = EXCLUDED.message, details = EXCLUDED.details,
                                        raised_at = now(), cleared_at = NULL
         WHERE alerts.cleared_at IS NOT NULL
       RETURNING key, kind, message, details, raised_at, cleared_at`,
      [key, opts.kind, opts.message, JSON.stringify(opts.details ?? {})],
    );
    const row = rows[0];
    if (row === undefined) return false;
    this.#raised.inc({ kind: row.kind });
    this.#log.error({ alert: row.key, kind: row.kind, details: row.details }, `ALERT raised: ${row.message}`);
    await this.#emit(toEvent(row, 'raised'));
    return true;
  }

  /** Clears the alert `key` if it is raised. Returns true if this call cleared it. */
  async clear(key: string): Promise<boolean> {
    const { rows } = await this.#db.query<AlertRow>(
      `UPDATE alerts SET cleared_at = now() WHERE key = $1 AND cleared_at IS NULL
       RETURNING key, kind, message, details, raised_at, cleared_at`,
      [key],
    );
    const row = rows[0];
    if (row === undefined) return false;
    this.#report(row);
    await this.#emit(toEvent(row, 'cleared'));
    return true;
  }

  /**
   * Clears every raised alert of `kind` whose key is not in `stillActive`: for monitors that see the
   * whole set of current conditions on each pass. Returns the keys cleared.
   */
  async clearAllExcept(kind: string, stillActive: readonly string[]): Promise<string[]> {
    const { rows } = await this.#db.query<AlertRow>(
      `UPDATE alerts SET cleared_at = now()
        WHERE kind = $1 AND cleared_at IS NULL AND NOT (key = ANY($2::text[]))
       RETURNING key, kind, message, details, raised_at, cleared_at`,
      [kind, stillActive],
    );
    for (const row of rows) {
      this.#report(row);
      await this.#emit(toEvent(row, 'cleared'));
    }
    return rows.map((r) => r.key);
  }

  /** Alerts raised and not cleared, oldest first. */
  async active(kind?: string): Promise<AlertEvent[]> {
    const { rows } = await this.#db.query<AlertRow>(
      `SELECT key, kind, message, details, raised_at, cleared_at FROM alerts
        WHERE cleared_at IS NULL AND ($1::text IS NULL OR kind = $1) ORDER BY raised_at, key`,
      [kind ?? null],
    );
    return rows.map((r) => toEvent(r, 'raised'));
  }

  #report(row: AlertRow): void {
    this.#cleared.inc({ kind: row.kind });
    this.#log.info({ alert: row.key, kind: row.kind }, `alert cleared: ${row.message}`);
  }

  async #emit(event: AlertEvent): Promise<void> {
    for (const sink of this.#sinks) {
      await sink
        .send(event)
        .catch((err: unknown) => this.#log.warn({ err, sink: sink.name, alert: event.key }, 'alert sink failed'));
    }
  }
}

function toEvent(row: AlertRow, state: AlertEvent['state']): AlertEvent {
  return {
    state,
    key: row.key,
    kind: row.kind,
    message: row.message,
    details: row.details,
    raisedAt: row.raised_at,
    clearedAt: row.cleared_at,
  };
}
