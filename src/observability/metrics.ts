/** Prometheus metrics (prom-client), one registry per service instance, served at GET /metrics. */
import { createHash, timingSafeEqual } from 'node:crypto';
import client from 'prom-client';

export type Registry = client.Registry;

/**
 * `refreshSeconds`: how often the gauges read from the database are read again in the background (see
 * DatabaseReads); 0 reads them at every scrape.
 */
export function createMetrics(opts: { refreshSeconds?: number } = {}) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const reads = new DatabaseReads(registry, opts.refreshSeconds ?? 0);
  SCHEDULES.set(registry, reads);
  return {
    registry,
    /** Stops the background reads of the database gauges. */
    stop: () => reads.stop(),
    httpRequests: new client.Counter({
      name: 'longhaul_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new client.Histogram({
      name: 'longhaul_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    jobsSubmitted: new client.Counter({
      name: 'longhaul_jobs_submitted_total',
      help: 'Jobs accepted through POST /v1/jobs',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The metric `name` of `registry`, created by `make` unless a module registered it before. */
export function registeredOnce<T extends client.Metric>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/**
 * `read` shared by the gauges of one scrape: prom-client collects every gauge at once, so those that
 * show parts of one database read await the same call instead of each making it.
 */
export function sharedRead<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () =>
    (pending ??= read().finally(() => {
      pending = undefined;
    }));
}

/** The outcome of a gauge's last read: its value, or a failure (the gauge then shows no series). */
type Outcome<T> = { ok: true; value: T } | { ok: false };

/**
 * The reads behind a registry's database gauges. A scrape never waits on the database but the first:
 * it starts a loop that reads every gauge at once, then again `refreshSeconds` after each pass ends,
 * and scrapes show the last pass's figures, so a scrape costs the same whatever the size of the tables
 * and however often Prometheus (or several) scrape. With `refreshSeconds` 0 every scrape reads.
 */
class DatabaseReads {
  readonly #refreshMs: number;
  readonly #reads: Array<() => Promise<void>> = [];
  /** The pass in progress, shared by the gauges of one scrape. */
  #pass: Promise<void> | undefined;
  #first: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** When the last pass ended (performance.now()), if one did. */
  #readAt: number | undefined;

  constructor(registry: Registry, refreshSeconds: number) {
    this.#refreshMs = refreshSeconds * 1000;
    const age: client.Gauge = new client.Gauge({
      name: 'longhaul_metrics_read_age_seconds',
      help: 'Age of the figures shown by the gauges read from the database (since their last read ended)',
      registers: [registry],
      collect: () => {
        if (this.#readAt !== undefined) age.set((performance.now() - this.#readAt) / 1000);
      },
    });
  }

  /** Adds a read to every pass; `keep` gets each outcome. */
  add<T>(read: () => Promise<T>, keep: (o: Outcome<T>) => void): void {
    this.#reads.push(() =>
      read().then(
        (value) => keep({ ok: true, value }),
        () => keep({ ok: false }),
      ),
    );
  }

  /** Resolves when the figures a scrape shows are there: at once, but for the first scrape or with no interval. */
  ready(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#refreshMs === 0) return this.#run();
    this.#first ??= this.#run().then(() => this.#schedule());
    return this.#first;
  }

  #run(): Promise<void> {
    this.#pass ??= Promise.all(this.#reads.map((r) => r())).then(() => {
      this.#readAt = performance.now();
      this.#pass = undefined;
    });
    return this.#pass;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run().then(() => this.#schedule()), this.#refreshMs);
    // Never what keeps a process alive.
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

const SCHEDULES = new WeakMap<Registry, DatabaseReads>();

/**
 * A gauge whose value is read from the database (by `read`) and shown by `show`, on the schedule of
 * its registry (DatabaseReads; a registry not made by createMetrics reads at every scrape). A read that
 * fails leaves the gauge without series until one succeeds and counts in
 * `longhaul_metrics_read_errors_total`: the rest of the scrape, the process's own counters, is still served.
 */
export function readGauge<L extends string, T>(
  registry: Registry,
  opts: {
    name: string;
    help: string;
    labelNames?: readonly L[];
    read: () => Promise<T>;
    show: (gauge: client.Gauge<L>, value: T) => void;
  },
): void {
  if (registry.getSingleMetric(opts.name) !== undefined) return;
  const errors = registeredOnce(
    registry,
    'longhaul_metrics_read_errors_total',
    () =>
      new client.Counter({
        name: 'longhaul_metrics_read_errors_total',
        help: 'Reads of a database gauge that failed (the gauge is left without series until one succeeds), by gauge',
        labelNames: ['metric'] as const,
        registers: [registry],
      }),
  );
  let reads = SCHEDULES.get(registry);
  if (reads === undefined) {
    reads = new DatabaseReads(registry, 0);
    SCHEDULES.set(registry, reads);
  }
  let last: Outcome<T> = { ok: false };
  reads.add(opts.read, (o) => {
    last = o;
    if (!o.ok) errors.inc({ metric: opts.name });
  });
  const schedule = reads;
  new client.Gauge<L>({
    name: opts.name,
    help: opts.help,
    labelNames: opts.labelNames ?? [],
    registers: [registry],
    async collect() {
      await schedule.ready();
      this.reset();
      if (last.ok) opts.show(this, last.value);
    },
  });
}

/** Whether an `Authorization` header carries `token` as its bearer (compared in constant time); true when no token is set. */
export function metricsAuthorized(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (given === undefined) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(token));
}
