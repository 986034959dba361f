/**
 * Worker processes announce themselves in the `workers` table and refresh a heartbeat there, so that
 * operators see which processes are alive and what each runs. A process that stops heartbeating drops
 * out of the list once its heartbeat is older than a lease, and its row is swept by the next heartbeat
 * of any other worker.
 */
import { hostname } from 'node:os';
import type { Queryable } from '../db/pool.ts';
import { RUNNING_SQL } from '../jobs/repository.ts';
import type { Logger } from '../observability/logger.ts';
import { readGauge, type Registry } from '../observability/metrics.ts';

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  started_at: Date;
  concurrency: number;
  job_types: string[];
  heartbeat_at: Date;
  /** The jobs whose lease this process holds now. */
  running: Array<{ id: string; type: string; tenant_id: string }>;
}

/** Live workers (heartbeat within `leaseSeconds`), oldest first, with the jobs they hold; tenant-scoped if given. */
export async function listWorkers(
  db: Queryable,
  leaseSeconds: number,
  tenantId: string | undefined,
): Promise<WorkerInfo[]> {
  const { rows } = await db.query<WorkerInfo>(
    `SELECT w.id, w.host, w.pid, w.started_at, w.concurrency, w.job_types, w.heartbeat_at,
            coalesce((SELECT jsonb_agg(jsonb_build_object('id', j.id, 'type', j.type, 'tenant_id', j.tenant_id) ORDER BY j.started_at)
                        FROM jobs j
                       WHERE ${RUNNING_SQL} AND j.lease_owner = w.id AND ($2::uuid IS NULL OR j.tenant_id = $2)), '[]') AS running
       FROM workers w
      WHERE w.heartbeat_at > now() - make_interval(secs => $1)
      ORDER BY w.started_at, w.id`,
    [leaseSeconds, tenantId ?? null],
  );
  return rows;
}

/** Slots of all live workers (their concurrency summed): what the fair share divides (src/worker/fair-share.ts). */
export async function clusterSlots(db: Queryable, leaseSeconds: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT coalesce(sum(concurrency), 0)::int AS n FROM workers WHERE heartbeat_at > now() - make_interval(secs => $1)',
    [leaseSeconds],
  );
  return rows[0]?.n ?? 0;
}

/** Number of live workers (for the overview). */
export async function countLiveWorkers(db: Queryable, leaseSeconds: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM workers WHERE heartbeat_at > now() - make_interval(secs => $1)',
    [leaseSeconds],
  );
  return rows[0]?.n ?? 0;
}

/** `longhaul_workers_online`: worker processes whose heartbeat is within a lease, read at scrape time. */
export function registerWorkerGauges(registry: Registry, db: Queryable, leaseSeconds: number): void {
  readGauge(registry, {
    name: 'longhaul_workers_online',
    help: 'Worker processes alive (heartbeat within a lease), all hosts',
    read: () => countLiveWorkers(db, leaseSeconds),
    show: (g, n) => g.set(n),
  });
}

export interface PresenceOptions {
  /** The worker's lease owner id (WorkerRuntime.owner), so its running jobs can be found. */
  id: string;
  concurrency: number;
  jobTypes: string[];
  leaseSeconds: number;
}

/** Registers this process as a worker and keeps its heartbeat until stopped. */
export class WorkerPresence {
  readonly #db: Queryable;
  readonly #log: Logger;
  readonly #opts: PresenceOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: Queryable, log: Logger, opts: PresenceOptions) {
    this.#db = db;
    this.#log = log;
    this.#opts = opts;
  }

  async start(): Promise<void> {
    const o = this.#opts;
    await this.#db.query(
      `INSERT INTO workers (id, host, pid, concurrency, job_types) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`,
      [o.id, hostname(), process.pid, o.concurrency, o.jobTypes],
    );
    // Three beats a lease: one late beat never makes a live process look gone.
    const everyMs = Math.max(100, (o.leaseSeconds * 1000) / 3);
    this.#timer = setInterval(() => void this.#beat(), everyMs);
    this.#timer.unref();
  }

  async #beat(): Promise<void> {
    try {
      await this.#db.query(
        `WITH gone AS (DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $2 * 2))
         UPDATE workers SET heartbeat_at = now() WHERE id = $1`,
        [this.#opts.id, this.#opts.leaseSeconds],
      );
    } catch (err) {
      // A missed beat during a database outage is retried by the next one.
      this.#log.debug({ err }, 'worker heartbeat failed');
    }
  }

  /** Stops the heartbeat and removes the row: a stopped process leaves the list at once. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#db.query('DELETE FROM workers WHERE id = $1', [this.#opts.id]).catch(() => undefined);
  }
}
