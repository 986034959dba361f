/**
 * Fetching executions from pg-boss as slots free up: woken at once by pg-boss's LISTEN/NOTIFY on the
 * process's listener (and by a slot freeing or the connection coming back), polling as a fallback. It
 * also forwards cancel notifications to the runtime. It never fetches more than the free slots, and
 * each fetch is limited per tenant to the tenant's fair share of the cluster's slots (fair-share.ts),
 * within the tenant's own running limit, applied before the free slots are filled (fair-fetch.ts).
 * While every slot is taken, it may start up to its burst slots beyond them, each only for a tenant with
 * no job running anywhere (fair-share.ts burstLimits): a newly active tenant starts at the next fetch
 * rather than after another tenant's job ends. A burst slot is not refilled: a job ending leaves the
 * worker within its slots before it fetches for a tenant already running jobs again.
 * While no tenant could start a job under it, it does not fetch, unless a job was announced since the
 * share was read (the reading did not count it). The fetch counts a tenant's running jobs in its
 * statement's snapshot, so two workers fetching at once could both fill the same last slot of a tenant:
 * while a running limit applies, fetches of every worker take turns under one advisory lock, each
 * seeing the jobs the one before it claimed. The fetch statement also claims the jobs of the
 * executions it takes where no row lock is needed (fair-fetch.ts), for the types with free slots here.
 */
import type { PgListener } from '../db/listener.ts';
import { createPool, isConnectionError, withTransaction, type Pool } from '../db/pool.ts';
import { QUEUES } from '../jobs/queues.ts';
import { CANCEL_CHANNEL } from '../jobs/repository.ts';
import type { Logger } from '../observability/logger.ts';
import { RUNNING_LIMIT_CHANNEL, runningLimits } from '../tenants/limits.ts';
import { fetchExecutions, type FetchedExecution } from './fair-fetch.ts';
import { burstLimits, groupLimits, type GroupLimits, type TenantDemand } from './fair-share.ts';
import { clusterSlots } from './presence.ts';
import { tenantDemand } from '../jobs/lifecycle.ts';

/** Fallback polling when no notification arrives (retries after backoff are not notified). */
export const POLL_INTERVAL_MS = 500;
/**
 * How long one reading of the tenants' demand and the cluster's slots serves the fetches that follow:
 * a busy worker fetches many times a second, and a share a few fetches old is still fair.
 */
const SHARE_TTL_MS = 100;
/** Arbitrary, fixed key of the transaction advisory lock that serialises fetches under a running limit. */
const LIMITED_FETCH_LOCK_KEY = 7_140_002;
/**
 * Least time between two readings started because jobs ended or were announced: a busy worker's jobs
 * end many times a second, and reading after each one kept a connection counting the active jobs
 * without pause.
 */
const REREAD_AFTER_CHANGE_MS = 20;

/**
 * The settings of the fetch's own connection. It plans each prepared statement once, for any
 * parameters: the fetch-and-claim statement took longer to plan for its parameters than to run, at
 * every fetch, once the statistics showed a real queue. That one plan must serve an idle queue and a
 * backlog alike, whatever the statistics it was made from: the statements find rows by id
 * (fair-fetch.ts, claimFetchedSql), and none reads a table whole (each read has an index), as the
 * planner would for a table that was empty when it planned. test/worker-fetch-plan.test.ts holds both.
 */
export const FETCH_SESSION = { plan_cache_mode: 'force_generic_plan', enable_seqscan: 'off' } as const;

/** The limits of one fetch, and whether pg-boss's plain fetch serves it (else the fair fetch). */
type FetchLimits = GroupLimits & { plain: boolean };

/** What the fair share is computed from, and when it was read. */
interface ShareReading {
  at: number;
  demand: Map<string, TenantDemand>;
  slots: number;
  /** Tenants' own running limits. */
  limits: Map<string, number>;
}

/**
 * The channel pg-boss 12 announces new jobs of notify-enabled queues on (its notifyChannelSql), as a SQL
 * expression; the worker LISTENs on it to wake at once. test/pgboss-drift.test.ts checks it against the
 * statement pg-boss's insert() runs, so an upgrade that renames the channel fails a test, not pickup.
 */
export const BOSS_CHANNEL_SQL = `'pgboss_' || left(encode(sha224('pgboss'::bytea), 'hex'), 24)`;

export class Fetcher {
  readonly #pool: Pool;
  /** The fetch's connection (one: the loop fetches one statement at a time); opened by start(). */
  #fetchPool: Pool | undefined;
  readonly #openFetchPool: ((databaseUrl: string) => Pool) | undefined;
  readonly #listener: PgListener;
  readonly #log: Logger;
  readonly #tenantLimit: number | undefined;
  readonly #concurrency: number;
  readonly #burstSlots: number;
  readonly #leaseSeconds: number;
  readonly #free: () => number;
  readonly #launch: (j: FetchedExecution) => void;
  readonly #owner: string;
  readonly #rooms: () => ReadonlyMap<string, number>;
  readonly #onCancel: (jobId: string) => void;
  readonly #stopping: () => boolean;
  readonly #pollIntervalMs: number;
  readonly #shareTtlMs: number;
  readonly #rereadAfterChangeMs: number;
  #wake: (() => void) | undefined;
  /** A wake-up came since the last fetch began: fetch again before waiting. */
  #woken = false;
  #loop: Promise<void> | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  /** pg-boss's job table of the executions queue. */
  #table = '';
  #share: ShareReading | undefined;
  /** When a job of this process last ended (performance.now()). */
  #endedAt = 0;
  /** When a running limit last changed, as heard (or the listener reconnected, so may have missed one). */
  #limitsChangedAt = 0;
  /** When a job was last announced (or the listener reconnected, so may have missed one). */
  #announcedAt = 0;
  /** When a burst fetch last began: an announcement is tried once by one, not at every wake. */
  #burstAt = 0;
  /** A reading is under way (off the fetch's path). */
  #reading = false;
  /** A reading waiting for REREAD_AFTER_CHANGE_MS to pass. */
  #rereadTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(deps: {
    pool: Pool;
    listener: PgListener;
    log: Logger;
    /** A hard limit on one tenant's running jobs for tenants without their own; undefined: none. */
    tenantLimit: number | undefined;
    /** Slots of this process (the cluster has at least these). */
    concurrency: number;
    /** Jobs this process may start beyond `concurrency` while every slot is taken (burstLimits). */
    burstSlots: number;
    /** A worker whose heartbeat is older is gone: its slots are not shared out. */
    leaseSeconds: number;
    /** Slots free in this process now (below 0 while it runs jobs in burst slots). */
    free: () => number;
    launch: (j: FetchedExecution) => void;
    /** This worker, as the fetch's claims write it to `lease_owner`. */
    owner: string;
    /** The job types with free slots here, and how many: the fetch claims jobs of these only, up to that many. */
    rooms: () => ReadonlyMap<string, number>;
    onCancel: (jobId: string) => void;
    /** True once the runtime stops: the loop ends. */
    stopping: () => boolean;
    /** Fallback polling interval (default POLL_INTERVAL_MS); tests stretch it so a missed wake-up shows. */
    pollIntervalMs?: number;
    /** How long a reading of the share serves (default SHARE_TTL_MS); tests stretch it likewise. */
    shareTtlMs?: number;
    /** Least time between readings started by a change (default REREAD_AFTER_CHANGE_MS); tests set 0. */
    rereadAfterChangeMs?: number;
    /** Opens the fetch's connection (default: one connection with FETCH_SESSION); tests watch it. */
    openFetchPool?: (databaseUrl: string) => Pool;
  }) {
    this.#pool = deps.pool;
    this.#listener = deps.listener;
    this.#log = deps.log;
    this.#tenantLimit = deps.tenantLimit;
    this.#concurrency = deps.concurrency;
    this.#burstSlots = deps.burstSlots;
    this.#leaseSeconds = deps.leaseSeconds;
    this.#free = deps.free;
    this.#launch = deps.launch;
    this.#owner = deps.owner;
    this.#rooms = deps.rooms;
    this.#onCancel = deps.onCancel;
    this.#stopping = deps.stopping;
    this.#pollIntervalMs = deps.pollIntervalMs ?? POLL_INTERVAL_MS;
    this.#shareTtlMs = deps.shareTtlMs ?? SHARE_TTL_MS;
    this.#rereadAfterChangeMs = deps.rereadAfterChangeMs ?? REREAD_AFTER_CHANGE_MS;
    this.#openFetchPool = deps.openFetchPool;
  }

  /**
   * Opens the fetch's connection, subscribes to pg-boss's and the cancel channel, and starts the loop;
   * `table`: the executions' (queueTable).
   */
  async start(databaseUrl: string, table: string): Promise<void> {
    this.#table = table;
    this.#fetchPool =
      this.#openFetchPool?.(databaseUrl) ?? createPool(databaseUrl, 1, 'longhaul-worker-fetch', FETCH_SESSION);
    // The fair fetch's index, on pg-boss's table, which exists once pg-boss has started (sql/075, 076);
    // on the fetch's connection, so that the first fetch finds it open.
    await this.#fetchPool.query('SELECT longhaul_boss_fair_fetch_index($1)', [this.#table]);
    const { rows } = await this.#pool.query<{ ch: string }>(`SELECT ${BOSS_CHANNEL_SQL} AS ch`);
    this.#unsubscribe = await this.#listener.subscribe([rows[0]?.ch ?? '', CANCEL_CHANNEL, RUNNING_LIMIT_CHANNEL], {
      onNotification: (channel, payload) => {
        if (channel === CANCEL_CHANNEL) this.#onCancel(payload);
        // A running limit is hard: no fetch after the change is heard may run under the reading before it.
        else if (channel === RUNNING_LIMIT_CHANNEL) this.#limitsChangedAt = performance.now();
        else {
          this.#announcedAt = performance.now();
          this.wake();
        }
      },
      // Jobs sent and limits changed while the connection was down were not announced: read, then fetch now.
      onConnect: () => {
        this.#limitsChangedAt = performance.now();
        this.#announcedAt = this.#limitsChangedAt;
        this.wake();
      },
    });
    this.#loop = this.#fetchLoop();
  }

  /** Fetches again now (a slot freed, a job was announced, or the runtime stops). */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /**
   * A job of this process ended: its slot is free, and its tenant may be below its share now. A reading
   * taken after its claim had committed counted it running: it no longer does (so an idle worker's next
   * fetch is not the fair one because of its own last job). The share is read again all the same.
   */
  jobEnded(claimed?: { tenant: string; at: number }): void {
    this.#endedAt = performance.now();
    const last = this.#share;
    if (claimed !== undefined && last !== undefined && last.at > claimed.at) {
      const d = last.demand.get(claimed.tenant);
      if (d !== undefined && (d.running > 1 || d.waiting > 0))
        last.demand.set(claimed.tenant, { ...d, running: Math.max(0, d.running - 1) });
      else last.demand.delete(claimed.tenant);
    }
    this.wake();
  }

  /** Ends when the loop has (the runtime is stopping); a second caller waits for the same. */
  async stopped(): Promise<void> {
    this.wake();
    await this.#loop;
  }

  /** Stops listening and closes the fetch's connection; after the running jobs ended, as cancellations are still delivered while they drain. */
  async unsubscribe(): Promise<void> {
    clearTimeout(this.#rereadTimer);
    await this.#unsubscribe?.();
    await this.#fetchPool?.end().catch(() => undefined);
    this.#fetchPool = undefined;
  }

  /**
   * The group limits of the next fetch (fair-share.ts), from the last reading; undefined: do not fetch.
   * A reading older than SHARE_TTL_MS, or from before a job of this process ended (its tenant may be
   * below its share now; at most every REREAD_AFTER_CHANGE_MS), is read again meanwhile, off the pickup's
   * path; the new reading wakes the loop. A job's end starts none while the reading shows one tenant
   * alone with jobs waiting, nobody held back and a job to start (a lone backlog draining): the fetch is
   * then pg-boss's plain one for every free slot whatever that tenant's jobs do, a job announced since
   * makes it the fair one (which takes a newcomer's job first), and a job due without an announcement
   * (a retry's backoff run out) shows in the reading within SHARE_TTL_MS. A reading from before a running
   * limit changed (or the listener reconnected) is not fetched under: one is read before the fetch. A
   * reading in which no tenant can start a job is not fetched under either, unless a job was announced
   * since it was taken: the reading did not count that job, so the fetch runs under its limits (which
   * still bound every tenant) rather than waiting for the poll, and the share is read again meanwhile.
   * With no slot `free`, a burst fetch runs under burstLimits, once after each announcement the reading
   * did not count, and at most once per poll interval under a reading that shows a tenant with jobs
   * waiting and none running.
   */
  async #groupLimits(free: number): Promise<FetchLimits | undefined> {
    const last =
      this.#share !== undefined && this.#share.at >= this.#limitsChangedAt ? this.#share : await this.#readShare();
    const age = performance.now() - last.at;
    const share = groupLimits(last.demand, last.slots, last.limits, this.#tenantLimit);
    const announced = last.at < this.#announcedAt;
    // A lone backlog draining: its jobs' ends change no share. With no job to start, the reading may
    // count as running a job claimed while it was taken and ended since: it is read again.
    const lone = share.alone && share.queued && !share.holdsBack && share.canStart;
    if (age > this.#shareTtlMs) this.#reread();
    else if ((last.at < this.#endedAt && !lone) || (announced && !share.canStart))
      this.#rereadIn(this.#rereadAfterChangeMs - age);
    if (free <= 0) {
      const limits = burstLimits(last.demand, share);
      // Once per announcement (a burst fetch since saw the job), and under a reading that shows a tenant
      // waiting, once per poll interval: such a reading is often stale by then (the tenant's job was taken
      // since), and jobs due without an announcement (a retry's backoff run out) are found by the poll.
      const since = performance.now() - this.#burstAt;
      const untried =
        (limits.canStart && since >= this.#pollIntervalMs) || (announced && this.#announcedAt > this.#burstAt);
      if (!untried) return undefined;
      this.#burstAt = performance.now();
      return { ...limits, plain: false };
    }
    if (!share.canStart && !announced) return undefined;
    // Nobody held back, and nobody waiting or one tenant alone, with no job announced since: the fetch
    // cannot pass over another tenant's job, and pg-boss's plain fetch is the lighter statement. After an
    // announcement, only on an idle pickup: this process runs nothing, and the jobs the reading saw
    // waiting are fewer than its free slots, so the plain fetch takes them all and at least the oldest of
    // those queued since (a reading taken beside the last pickup's claim still counts that job waiting).
    // A worker whose slots are busy may hold a reading from before one tenant's backlog came, and the plain
    // fetch would take that backlog ahead of a newer tenant.
    let waiting = 0;
    for (const d of last.demand.values()) waiting += d.waiting;
    const idle = free >= this.#concurrency && waiting < free;
    const plain = !share.holdsBack && (announced ? idle : !share.queued || share.alone);
    return { ...share, plain };
  }

  /** Reads again in `ms` (now if not positive), unless a reading is under way or already waiting. */
  #rereadIn(ms: number): void {
    if (ms <= 0) return this.#reread();
    if (this.#rereadTimer !== undefined) return;
    this.#rereadTimer = setTimeout(() => {
      this.#rereadTimer = undefined;
      if (!this.#stopping()) this.#reread();
    }, ms).unref();
  }

  #reread(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#readShare()
      .then(
        () => this.wake(),
        // An outage is logged once, by the listener; the next fetch reads again.
        (err: unknown) => isConnectionError(err) || this.#log.warn({ err }, 'reading the tenants’ demand failed'),
      )
      .finally(() => (this.#reading = false));
  }

  async #readShare(): Promise<ShareReading> {
    const at = performance.now();
    const [demand, slots, limits] = await Promise.all([
      // Demand beyond the slots changes no share: counted up to the last reading's (or this process's).
      tenantDemand(this.#pool, Math.max(this.#concurrency, this.#share?.slots ?? 0)),
      clusterSlots(this.#pool, this.#leaseSeconds),
      runningLimits(this.#pool),
    ]);
    const reading = { at, demand, slots: Math.max(slots, this.#concurrency), limits };
    // A reading begun before a running limit changed is not kept (it may have missed the change).
    if (at >= this.#limitsChangedAt) this.#share = reading;
    return reading;
  }

  /** Fetches executions, claiming in the same statement the jobs that need no locked claim (fair-fetch.ts). */
  async #fetch(free: number, limits: FetchLimits): Promise<FetchedExecution[]> {
    const pool = this.#fetchPool;
    if (pool === undefined) return [];
    const lease = { owner: this.#owner, seconds: this.#leaseSeconds, rooms: this.#rooms() };
    const share = limits.plain ? undefined : { cap: limits.default, caps: limits.tiers };
    if (share === undefined || !limits.hard) return fetchExecutions(pool, this.#table, QUEUES.jobs, free, share, lease);
    return withTransaction(pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LIMITED_FETCH_LOCK_KEY]);
      return fetchExecutions(c, this.#table, QUEUES.jobs, free, share, lease);
    });
  }

  async #waitForWake(ms: number): Promise<void> {
    if (this.#woken) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  async #fetchLoop(): Promise<void> {
    while (!this.#stopping()) {
      this.#woken = false;
      const free = this.#free();
      // Every slot taken: the burst slots left, for a tenant with no job running anywhere.
      const want = free > 0 ? free : free + this.#burstSlots;
      if (want > 0) {
        let jobs: FetchedExecution[] = [];
        try {
          const limits = await this.#groupLimits(free);
          if (limits !== undefined) jobs = await this.#fetch(want, limits);
        } catch (err) {
          // An outage is logged once, by the listener; fetching resumes when the database answers.
          if (!isConnectionError(err)) this.#log.error({ err }, 'fetching executions failed');
        }
        for (const j of jobs) this.#launch(j);
        // A full batch means there is likely more: fetch again once a slot frees (or now, if one is free).
        if (jobs.length > 0 && jobs.length === want) continue;
      }
      await this.#waitForWake(this.#pollIntervalMs);
    }
  }
}
