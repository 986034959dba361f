/**
 * The realtime hub of one API process: a subscription to the process's LISTEN connection, a channel per job
 * that has subscribers here (its recent events, read once per notification burst and shared by every
 * subscriber of the job), and a subscription per client that pulls from it at the client's own pace.
 *
 * The hub listens to job events only while it follows a job: a process listening to them is woken for
 * each announcement whether it has a stream open or not, and an API process with no stream is not. LISTEN
 * is in place before the hub reads what it follows (the listener calls onConnect after it), so what
 * committed before that is read, and what commits after is announced. Workers announce only while some
 * hub follows a job (src/jobs/events-publisher.ts): while it does, the hub says `follow` on
 * STREAM_FOLLOWERS_CHANNEL once LISTEN is in place, every FOLLOWING_HEARTBEAT_MS, and when asked.
 *
 * The job lifecycle's actions (src/jobs/lifecycle.ts) commit a job's events (status rows in
 * `job_events`, progress in the jobs row) and NOTIFY `jobId:seq`; the hub reads the events by sequence number, so a lost notification or a
 * reconnection only delays events, never loses them.
 * A subscription holds at most one page of events: a client that reads slowly falls behind, and once it
 * is more than COALESCE_LAG events behind it is sent every status event but only the newest progress.
 */
import client from 'prom-client';
import type { PgListener } from '../db/listener.ts';
import { isConnectionError, type Pool } from '../db/pool.ts';
import { FOLLOWERS_SQL } from '../jobs/events-publisher.ts';
import { FOLLOWING_HEARTBEAT_MS, JOB_EVENTS_CHANNEL, STREAM_FOLLOWERS_CHANNEL } from '../jobs/repository.ts';
import { isTerminal } from '../jobs/state.ts';
import type { Logger } from '../observability/logger.ts';
import { Periodic } from '../periodic.ts';
import {
  eventMessage,
  readCoalesced,
  readEvents,
  readEventsOfJobs,
  type JobEvent,
  type SnapshotMessage,
} from './events.ts';

/** Events a subscription takes at once (its queue never holds more). */
export const PAGE_SIZE = 100;
/** A subscriber this many events behind the newest gets progress coalesced (statuses are still all sent). */
export const COALESCE_LAG = 100;
/** Recent events kept per followed job, so subscribers that keep up never read the database themselves. */
const RING_SIZE = 256;
/** Events read per job per query when following notifications. */
const FETCH_LIMIT = 500;
/** Jobs read per query when many have news at once. */
const JOBS_PER_QUERY = 500;
/** Wait before retrying a failed read of new events. */
const FETCH_RETRY_MS = 1_000;
/**
 * Every followed job is re-read this often even without a notification: workers announce after their
 * commit (src/jobs/events-publisher.ts), so an announcement lost to a crash or a failed send would
 * otherwise hold its events back until the job's next one.
 */
const CATCH_UP_INTERVAL_MS = 2_000;

/** How a stream ends: after the terminal status, at shutdown, because the peer stopped answering, or because it left. */
export type CloseReason = 'finished' | 'shutdown' | 'dead' | 'gone';

/** One message as a transport writes it: its type and sequence (the SSE `event`/`id`), and its JSON. */
export interface Frame {
  type: 'snapshot' | 'progress' | 'status';
  seq: number;
  json: string;
}

/** A client connection (SSE or WebSocket) as the hub drives it. */
export interface StreamSink {
  readonly transport: 'sse' | 'websocket';
  /** Writes one frame; resolves once the transport has room for more (this is the backpressure). */
  send(frame: Frame): Promise<void>;
  /** Keeps an idle connection alive; returns false when the peer has stopped answering. */
  ping(): boolean;
  /** Bytes written but not yet handed to the kernel. */
  bufferedBytes(): number;
  close(reason: CloseReason): void;
}

export interface SubscribeOptions {
  jobId: string;
  /** Events with a higher sequence are delivered. */
  after: number;
  /** The job's event sequence when the request read it (where a new channel starts following). */
  current: number;
  /** Sent first, for a new subscription (a resumed one continues with what it missed). */
  snapshot?: SnapshotMessage;
  /** Progress the client has already seen: what it is sent never goes below it. */
  floor: { processed: number; percent: number | null };
  sink: StreamSink;
}

export interface SubscriberStats {
  id: number;
  jobId: string;
  transport: 'sse' | 'websocket';
  /** Sequence of the last event sent. */
  sentSeq: number;
  /** Events taken from the job's stream and not yet written (at most PAGE_SIZE). */
  queued: number;
  bufferedBytes: number;
  sent: number;
  coalesced: number;
  /** How long the current write has waited for the client (0 when none is pending). */
  writeWaitingMs: number;
}

export interface HubStats {
  listening: boolean;
  /** True while LISTEN on job events is in place: the hub follows at least one job. */
  followingEvents: boolean;
  /** Job-event notifications received since the hub started. */
  notifications: number;
  jobs: number;
  subscribers: SubscriberStats[];
}

export interface HubOptions {
  pool: Pool;
  /** The process's LISTEN connection (src/db/listener.ts). */
  listener: PgListener;
  log: Logger;
  /** Ping idle connections this often; one that makes no progress for twice as long is closed. (Default: 15 000) */
  pingIntervalMs?: number;
  /** Registry to publish the hub's metrics in. (Default: none) */
  registry?: client.Registry;
}

class JobChannel {
  readonly jobId: string;
  readonly subscribers = new Set<Subscription>();
  /** Highest sequence announced by a notification (or known from a snapshot). */
  latestSeq: number;
  /** Every event with afterSeq < seq ≤ fetchedSeq is in `ring`. */
  ringAfter: number;
  fetchedSeq: number;
  ring: JobEvent[] = [];

  constructor(jobId: string, after: number) {
    this.jobId = jobId;
    this.latestSeq = after;
    this.ringAfter = after;
    this.fetchedSeq = after;
  }

  append(events: JobEvent[]): void {
    for (const e of events) {
      if (e.seq <= this.fetchedSeq) continue;
      this.ring.push(e);
      this.fetchedSeq = e.seq;
    }
    if (this.fetchedSeq > this.latestSeq) this.latestSeq = this.fetchedSeq;
    if (this.ring.length > RING_SIZE) {
      const dropped = this.ring.splice(0, this.ring.length - RING_SIZE);
      const last = dropped.at(-1);
      if (last !== undefined) this.ringAfter = last.seq;
    }
  }

  /** Up to `limit` events after `seq` from memory, or undefined when the ring no longer reaches back that far. */
  fromRing(seq: number, limit: number): JobEvent[] | undefined {
    if (seq < this.ringAfter) return undefined;
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ring[mid]?.seq ?? Infinity) <= seq) lo = mid + 1;
      else hi = mid;
    }
    return this.ring.slice(lo, lo + limit);
  }
}

const NO_FLOOR = { processed: 0, percent: null };

/** The JSON of an event as most subscribers send it (computed once per event, not once per subscriber). */
const cachedJson = new WeakMap<JobEvent, string>();

class Subscription {
  readonly id: number;
  readonly jobId: string;
  readonly sink: StreamSink;
  readonly done: Promise<void>;
  sentSeq: number;
  floor: { processed: number; percent: number | null };
  queue: JobEvent[] = [];
  sent = 0;
  coalesced = 0;
  writingSince: number | undefined;
  lastWriteAt = performance.now();
  closed = false;
  readonly #hub: RealtimeHub;
  readonly #channel: JobChannel;
  #wake: (() => void) | undefined;
  #resolveDone: () => void = () => undefined;

  constructor(hub: RealtimeHub, channel: JobChannel, id: number, opts: SubscribeOptions) {
    this.#hub = hub;
    this.#channel = channel;
    this.id = id;
    this.jobId = opts.jobId;
    this.sink = opts.sink;
    this.sentSeq = opts.after;
    this.floor = opts.floor;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** New events are in the channel (or the subscription is closing): resume the pump if it waits. */
  wake(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.wake();
    this.#hub.detach(this);
    try {
      this.sink.close(reason);
    } finally {
      this.#resolveDone();
    }
  }

  /** Called by the hub's timer: pings an idle connection, closes one that stopped taking data or answering. */
  tick(now: number, pingIntervalMs: number): void {
    if (this.writingSince !== undefined) {
      if (now - this.writingSince > 2 * pingIntervalMs) this.close('dead');
      return;
    }
    if (!this.sink.ping()) this.close('dead');
  }

  async run(snapshot: SnapshotMessage | undefined): Promise<void> {
    try {
      if (snapshot !== undefined) {
        await this.#write({ type: 'snapshot', seq: snapshot.seq, json: JSON.stringify(snapshot) });
        if (isTerminal(snapshot.job.status)) return this.close('finished');
      }
      while (!this.closed) {
        const channel = this.#channel;
        if (this.sentSeq >= channel.fetchedSeq) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
          continue;
        }
        const lagging = channel.latestSeq - this.sentSeq > COALESCE_LAG;
        const batch = lagging
          ? await readCoalesced(this.#hub.pool, this.jobId, this.sentSeq, PAGE_SIZE)
          : (channel.fromRing(this.sentSeq, PAGE_SIZE) ??
            (await readEvents(this.#hub.pool, this.jobId, this.sentSeq, PAGE_SIZE)));
        const last = batch.at(-1);
        if (last === undefined) {
          // Announced but not visible yet, or nothing after all: wait for the channel's next read.
          await new Promise<void>((resolve) => (this.#wake = resolve));
          continue;
        }
        if (lagging) {
          const skipped = last.seq - this.sentSeq - batch.length;
          this.coalesced += skipped;
          this.#hub.countCoalesced(skipped);
        }
        this.queue = batch;
        while (!this.closed) {
          const e = this.queue.shift();
          if (e === undefined) break;
          if (e.seq <= this.sentSeq) continue;
          const terminal = await this.#sendEvent(e);
          if (terminal) return this.close('finished');
          // Fallen behind while writing: drop the rest and re-read with progress coalesced.
          if (!lagging && channel.latestSeq - this.sentSeq > COALESCE_LAG) this.queue = [];
        }
      }
    } catch (err) {
      if (!this.closed) this.#hub.log.warn({ err, job_id: this.jobId }, 'event stream failed');
      this.close('dead');
    }
  }

  /** Writes one event (progress held at the floor); true when it was the terminal status. */
  async #sendEvent(e: JobEvent): Promise<boolean> {
    const msg = eventMessage(e, this.floor);
    let json: string;
    if (msg.type === 'progress') {
      const raw = eventMessage(e, NO_FLOOR);
      const clamped = raw.type !== 'progress' || raw.processed !== msg.processed || raw.percent !== msg.percent;
      this.floor = { processed: msg.processed, percent: msg.percent };
      json = clamped ? JSON.stringify(msg) : this.#cached(e, () => JSON.stringify(msg));
    } else {
      json = this.#cached(e, () => JSON.stringify(msg));
    }
    await this.#write({ type: msg.type, seq: e.seq, json });
    this.sentSeq = e.seq;
    return msg.type === 'status' && isTerminal(msg.status);
  }

  #cached(e: JobEvent, make: () => string): string {
    let json = cachedJson.get(e);
    if (json === undefined) {
      json = make();
      cachedJson.set(e, json);
    }
    return json;
  }

  async #write(frame: Frame): Promise<void> {
    this.writingSince = performance.now();
    try {
      await this.sink.send(frame);
    } finally {
      this.writingSince = undefined;
    }
    this.lastWriteAt = performance.now();
    this.sent++;
  }

  stats(): SubscriberStats {
    return {
      id: this.id,
      jobId: this.jobId,
      transport: this.sink.transport,
      sentSeq: this.sentSeq,
      queued: this.queue.length,
      bufferedBytes: this.sink.bufferedBytes(),
      sent: this.sent,
      coalesced: this.coalesced,
      writeWaitingMs: this.writingSince === undefined ? 0 : Math.round(performance.now() - this.writingSince),
    };
  }
}

export class RealtimeHub {
  readonly pool: Pool;
  readonly log: Logger;
  readonly #listener: PgListener;
  #unsubscribe: (() => Promise<void>) | undefined;
  /** Bringing LISTEN in line with whether a job is followed (#reconcile), while it runs. */
  #reconciling: Promise<void> | undefined;
  #notifications = 0;
  /** Saying `follow`, while the statement is in flight. */
  #saying: Promise<void> | undefined;
  #sayAgain = false;
  readonly #channels = new Map<string, JobChannel>();
  readonly #dirty = new Set<JobChannel>();
  readonly #pingIntervalMs: number;
  readonly #coalescedTotal: client.Counter | undefined;
  #flushing = false;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Pings idle streams, and re-reads every followed job in case an announcement was lost. */
  readonly #periodic: Periodic;
  #nextId = 1;
  #stopped = false;

  constructor(opts: HubOptions) {
    this.pool = opts.pool;
    this.log = opts.log;
    this.#pingIntervalMs = opts.pingIntervalMs ?? 15_000;
    this.#listener = opts.listener;
    this.#periodic = new Periodic(opts.log)
      .every('pinging streams', this.#pingIntervalMs, () => {
        const now = performance.now();
        for (const ch of this.#channels.values()) for (const s of ch.subscribers) s.tick(now, this.#pingIntervalMs);
      })
      .every('catching up on job events', CATCH_UP_INTERVAL_MS, () => {
        for (const ch of this.#channels.values()) this.#markDirty(ch);
      })
      .every('saying the hub follows jobs', FOLLOWING_HEARTBEAT_MS, async () => {
        if (this.#unsubscribe !== undefined) await this.#sayFollowing();
      });
    if (opts.registry !== undefined) {
      const subscriptions = () => [...this.#channels.values()].reduce((n, ch) => n + ch.subscribers.size, 0);
      new client.Gauge({
        name: 'longhaul_stream_subscribers',
        help: 'Open event streams (SSE and WebSocket) on this process',
        registers: [opts.registry],
        collect() {
          this.set(subscriptions());
        },
      });
      this.#coalescedTotal = new client.Counter({
        name: 'longhaul_stream_events_coalesced_total',
        help: 'Progress events not sent to slow subscribers because a newer one superseded them',
        registers: [opts.registry],
      });
    }
  }

  /** True while the LISTEN connection is up (a readiness check). */
  get listening(): boolean {
    return this.#listener.connected;
  }

  /** False once stopping: new streams should be refused. */
  get accepting(): boolean {
    return !this.#stopped;
  }

  async start(): Promise<void> {
    this.#periodic.start();
  }

  /** Ends every stream (clients reconnect elsewhere with their last sequence) and unsubscribes. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#periodic.stop();
    clearTimeout(this.#retryTimer);
    for (const ch of [...this.#channels.values()]) for (const s of [...ch.subscribers]) s.close('shutdown');
    this.#reconcile();
    while (this.#reconciling !== undefined) await this.#reconciling;
    await this.#saying;
  }

  /** Listens to job events while a job is followed and the hub runs, and stops listening otherwise. */
  #reconcile(): void {
    if (this.#reconciling !== undefined) return;
    this.#reconciling = this.#bringInLine().finally(() => {
      this.#reconciling = undefined;
      // A change between the last check and now.
      if (this.#wantsEvents() !== (this.#unsubscribe !== undefined)) this.#reconcile();
    });
  }

  /**
   * Says `follow` to the workers' announcers, one statement at a time: asked meanwhile, it says it again
   * after (that statement may have committed before the asking announcer listened).
   */
  #sayFollowing(): Promise<void> {
    if (this.#saying !== undefined) {
      this.#sayAgain = true;
      return this.#saying;
    }
    this.#saying = (async () => {
      do {
        this.#sayAgain = false;
        try {
          await this.pool.query(FOLLOWERS_SQL, ['follow']);
        } catch (err) {
          // Said again at the next heartbeat; an outage is logged once, by the listener.
          if (!isConnectionError(err)) this.log.warn({ err }, 'telling workers the hub follows jobs failed');
        }
      } while (this.#sayAgain && !this.#stopped);
      this.#saying = undefined;
    })();
    return this.#saying;
  }

  #wantsEvents(): boolean {
    return this.#channels.size > 0 && !this.#stopped;
  }

  async #bringInLine(): Promise<void> {
    for (;;) {
      const follow = this.#wantsEvents();
      if (follow === (this.#unsubscribe !== undefined)) return;
      if (follow)
        this.#unsubscribe = await this.#listener.subscribe([JOB_EVENTS_CHANNEL, STREAM_FOLLOWERS_CHANNEL], {
          onNotification: (channel, payload) => {
            if (channel === JOB_EVENTS_CHANNEL) this.#onNotification(payload);
            else if (payload === 'ask') void this.#sayFollowing();
          },
          // LISTEN is in place (now, or again after a reconnection): tell the workers to announce, and
          // read what every followed job committed meanwhile, by sequence.
          onConnect: () => {
            void this.#sayFollowing();
            for (const ch of this.#channels.values()) this.#markDirty(ch);
          },
        });
      else {
        const unsubscribe = this.#unsubscribe;
        this.#unsubscribe = undefined;
        await unsubscribe?.();
      }
    }
  }

  /** Starts streaming a job's events to a client; the returned promise settles when the stream ends. */
  subscribe(opts: SubscribeOptions): { id: number; done: Promise<void>; close(reason: CloseReason): void } {
    let ch = this.#channels.get(opts.jobId);
    if (ch === undefined) {
      ch = new JobChannel(opts.jobId, opts.current);
      this.#channels.set(opts.jobId, ch);
    }
    if (opts.current > ch.latestSeq) ch.latestSeq = opts.current;
    const sub = new Subscription(this, ch, this.#nextId++, opts);
    ch.subscribers.add(sub);
    if (this.#stopped) {
      sub.close('shutdown');
    } else {
      // Events committed between the caller's snapshot and now were announced before this channel
      // followed the job: read once now.
      this.#markDirty(ch);
      this.#reconcile();
      void sub.run(opts.snapshot);
    }
    return { id: sub.id, done: sub.done, close: (reason) => sub.close(reason) };
  }

  stats(): HubStats {
    const subscribers: SubscriberStats[] = [];
    for (const ch of this.#channels.values()) for (const s of ch.subscribers) subscribers.push(s.stats());
    return {
      listening: this.listening,
      followingEvents: this.#unsubscribe !== undefined,
      notifications: this.#notifications,
      jobs: this.#channels.size,
      subscribers,
    };
  }

  /** @internal A subscription ended. */
  detach(sub: Subscription): void {
    const ch = this.#channels.get(sub.jobId);
    if (ch === undefined) return;
    ch.subscribers.delete(sub);
    if (ch.subscribers.size === 0) {
      this.#channels.delete(sub.jobId);
      this.#dirty.delete(ch);
      if (this.#channels.size === 0) this.#reconcile();
    }
  }

  /** @internal */
  countCoalesced(n: number): void {
    if (n > 0) this.#coalescedTotal?.inc(n);
  }

  #onNotification(payload: string): void {
    this.#notifications++;
    const sep = payload.lastIndexOf(':');
    const ch = this.#channels.get(payload.slice(0, sep));
    if (ch === undefined) return;
    const seq = Number(payload.slice(sep + 1));
    if (Number.isSafeInteger(seq) && seq > ch.latestSeq) ch.latestSeq = seq;
    if (ch.latestSeq > ch.fetchedSeq) this.#markDirty(ch);
  }

  #markDirty(ch: JobChannel): void {
    this.#dirty.add(ch);
    if (this.#flushing || this.#stopped) return;
    this.#flushing = true;
    setImmediate(() => void this.#flush());
  }

  /** Reads what is new for every job with news, one query per JOBS_PER_QUERY jobs, and wakes their subscribers. */
  async #flush(): Promise<void> {
    try {
      while (this.#dirty.size > 0 && !this.#stopped) {
        const batch = [...this.#dirty].slice(0, JOBS_PER_QUERY);
        for (const ch of batch) this.#dirty.delete(ch);
        let events: JobEvent[];
        try {
          events = await readEventsOfJobs(
            this.pool,
            batch.map((ch) => ({ jobId: ch.jobId, after: ch.fetchedSeq })),
            FETCH_LIMIT,
          );
        } catch (err) {
          // An outage is logged once, by the listener.
          if (!isConnectionError(err)) this.log.warn({ err }, 'reading job events failed; retrying');
          for (const ch of batch) this.#dirty.add(ch);
          clearTimeout(this.#retryTimer);
          this.#retryTimer = setTimeout(() => {
            const any = this.#dirty.values().next();
            if (!any.done) this.#markDirty(any.value);
          }, FETCH_RETRY_MS);
          this.#retryTimer.unref();
          return;
        }
        const byJob = new Map<string, JobEvent[]>();
        for (const e of events) {
          let list = byJob.get(e.jobId);
          if (list === undefined) byJob.set(e.jobId, (list = []));
          list.push(e);
        }
        for (const ch of batch) {
          if (this.#channels.get(ch.jobId) !== ch) continue;
          const got = byJob.get(ch.jobId) ?? [];
          ch.append(got);
          if (got.length >= FETCH_LIMIT) this.#dirty.add(ch);
          for (const s of ch.subscribers) s.wake();
        }
      }
    } finally {
      this.#flushing = false;
    }
  }
}
