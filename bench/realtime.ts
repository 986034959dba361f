/**
 * Issue 6: live progress latency, from a checkpoint's commit to its receipt by a client, p50/p99, with
 * 1,000 concurrent subscribers (half SSE, half WebSocket, 10 per job) on one API process, beside a
 * plain LISTEN connection receiving the same commits' notifications (the floor: Postgres NOTIFY
 * itself). And that process's memory per subscriber, beside its memory per idle keep-alive HTTP
 * connection (each measured in a fresh API process).
 */
import net from 'node:net';
import pg from 'pg';
import { JOB_EVENTS_CHANNEL } from '../src/jobs/repository.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule } from './harness.ts';
import { metricValue, startChildService, type ChildService } from './support.ts';

const SUBSCRIBERS = 1000;
const PER_JOB = 10;
const JOBS = SUBSCRIBERS / PER_JOB;
/** Checkpoints committed per second across all jobs while measuring, and for how long. */
const CHECKPOINTS_PER_SECOND = 200;
const SECONDS = 5;
/** Producer connections (checkpoints of different jobs commit concurrently, as workers do). */
const PRODUCERS = 4;
const TARGET_P99_MS = 50;

/** The worker's checkpoint statement, reduced to progress (src/jobs/lifecycle.ts writeCheckpoint). */
const CHECKPOINT_SQL = `WITH u AS (
    UPDATE jobs SET processed = processed + 1, event_seq = event_seq + 1, updated_at = now() WHERE id = $1
    RETURNING id, event_seq, processed, total),
  e AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, event_seq, 'progress', jsonb_build_object('processed', processed, 'total', total, 'percent', least(100, floor(processed * 10000.0 / total) / 100)) FROM u)
  SELECT event_seq AS seq, pg_notify('${JOB_EVENTS_CHANNEL}', id::text || ':' || event_seq::text) FROM u`;

/** Resident memory of the API process once it has settled (a few samples, the lowest). */
async function settledRss(url: string): Promise<number> {
  let low = Infinity;
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 200));
    low = Math.min(low, (await metricValue(url, 'process_resident_memory_bytes')) ?? Number.NaN);
  }
  return low;
}

/** Opens `n` idle keep-alive HTTP connections (each has served one request). */
async function idleConnections(url: string, n: number): Promise<net.Socket[]> {
  const { port } = new URL(url);
  return Promise.all(
    Array.from({ length: n }, async () => {
      const s = net.connect(Number(port), '127.0.0.1');
      await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
      s.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
      await new Promise((resolve) => s.once('data', resolve));
      return s;
    }),
  );
}

interface Subscriber {
  close(): void;
}

export const realtimeBench: BenchModule = {
  title: `live progress: checkpoint → client latency at ${SUBSCRIBERS} subscribers, memory per subscriber`,
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: PRODUCERS + 2 });
    const services: ChildService[] = [];
    const subscribers: Subscriber[] = [];
    const listener = new pg.Client({ connectionString: db.url });
    try {
      const tenant = await createTenant(pool, 'bench');
      const auth = { authorization: `Bearer ${tenant.api_key}` };
      const { rows: jobs } = await pool.query<{ id: string }>(
        `INSERT INTO jobs (id, tenant_id, type, input, max_attempts, status, total, started_at)
         SELECT gen_random_uuid(), $1, 'synthetic', '{"chunks":1000000,"chunk_ms":0}', 3, 'RUNNING', 1000000, now() FROM generate_series(1, $2) RETURNING id`,
        [tenant.id, JOBS],
      );
      await pool.query('ANALYZE jobs; ANALYZE job_events');

      // Baseline memory: idle keep-alive connections to a fresh API process.
      const plain = await startChildService('api', { DATABASE_URL: db.url });
      services.push(plain);
      const plainBefore = await settledRss(plain.url);
      const sockets = await idleConnections(plain.url, SUBSCRIBERS);
      const plainPer = ((await settledRss(plain.url)) - plainBefore) / SUBSCRIBERS;
      for (const s of sockets) s.destroy();
      await plain.stop();

      const api = await startChildService('api', { DATABASE_URL: db.url });
      services.push(api);
      const rssBefore = await settledRss(api.url);

      // When each event's commit was acknowledged to its producer, and when each receiver got it
      // (compared at the end: a receipt may come before the producer sees its acknowledgement).
      const committed = new Map<string, number>();
      const clientReceipts: Array<[string, number]> = [];
      const listenReceipts: Array<[string, number]> = [];
      let measuring = false;
      const received = (jobId: string, seq: number) => {
        if (measuring) clientReceipts.push([`${jobId}:${seq}`, performance.now()]);
      };
      await listener.connect();
      listener.on('notification', (n) => {
        if (measuring && n.payload !== undefined) listenReceipts.push([n.payload, performance.now()]);
      });
      await listener.query(`LISTEN ${JOB_EVENTS_CHANNEL}`);

      let opened = 0;
      await Promise.all(
        Array.from({ length: SUBSCRIBERS }, async (_, i) => {
          const job = jobs[i % JOBS]?.id ?? '';
          if (i % 2 === 0) {
            const ws = new WebSocket(`${api.url.replace(/^http/, 'ws')}/v1/jobs/${job}/events`, { headers: auth });
            ws.addEventListener('message', (e: MessageEvent) => {
              const m = JSON.parse(String(e.data)) as { type: string; seq: number };
              if (m.type === 'progress') received(job, m.seq);
            });
            await new Promise<void>((resolve, reject) => {
              ws.addEventListener('open', () => resolve());
              ws.addEventListener('error', () => reject(new Error('WebSocket failed')));
            });
            subscribers.push({ close: () => ws.close() });
          } else {
            const abort = new AbortController();
            const res = await fetch(`${api.url}/v1/jobs/${job}/events`, {
              headers: { ...auth, accept: 'text/event-stream' },
              signal: abort.signal,
            });
            if (res.status !== 200 || res.body === null) throw new Error(`SSE answered ${res.status}`);
            subscribers.push({ close: () => abort.abort() });
            void (async () => {
              const decoder = new TextDecoder();
              let buffer = '';
              try {
                for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
                  buffer += decoder.decode(chunk, { stream: true });
                  let end: number;
                  while ((end = buffer.indexOf('\n\n')) >= 0) {
                    const block = buffer.slice(0, end);
                    buffer = buffer.slice(end + 2);
                    if (!block.includes('event: progress')) continue;
                    const id = /(?:^|\n)id: (\d+)/.exec(block)?.[1];
                    if (id !== undefined) received(job, Number(id));
                  }
                }
              } catch {
                // aborted at the end
              }
            })();
          }
          opened++;
        }),
      );
      ctx.log(`${opened} subscribers open (${SUBSCRIBERS / 2} WebSocket, ${SUBSCRIBERS / 2} SSE, ${PER_JOB} per job)`);
      const rssOpen = await settledRss(api.url);

      // Producers: checkpoints round-robin over the jobs at a steady rate.
      const checkpoint = async (job: string) => {
        const { rows } = await pool.query<{ seq: number }>(CHECKPOINT_SQL, [job]);
        committed.set(`${job}:${rows[0]?.seq ?? -1}`, performance.now());
      };
      const produce = async (seconds: number) => {
        const total = CHECKPOINTS_PER_SECOND * seconds;
        const start = performance.now();
        let next = 0;
        await Promise.all(
          Array.from({ length: PRODUCERS }, async () => {
            for (;;) {
              const n = next++;
              if (n >= total) return;
              const due = start + (n * 1000) / CHECKPOINTS_PER_SECOND;
              const wait = due - performance.now();
              if (wait > 0) await new Promise((r) => setTimeout(r, wait));
              await checkpoint(jobs[n % JOBS]?.id ?? '');
            }
          }),
        );
      };
      await produce(1); // warm-up
      await new Promise((r) => setTimeout(r, 300));
      measuring = true;
      await produce(SECONDS);
      await new Promise((r) => setTimeout(r, 500));
      measuring = false;
      const latencyOf = (receipts: Array<[string, number]>) =>
        receipts.flatMap(([key, at]) => {
          const c = committed.get(key);
          return c === undefined ? [] : [at - c];
        });
      const latencies = latencyOf(clientReceipts);
      const listenLatencies = latencyOf(listenReceipts);
      const expected = CHECKPOINTS_PER_SECOND * SECONDS * PER_JOB;
      if (latencies.length < expected) ctx.log(`received ${latencies.length} of ${expected} progress messages`);

      const perSubscriber = (rssOpen - rssBefore) / SUBSCRIBERS;
      const p50 = percentile(latencies, 50);
      const p99 = percentile(latencies, 99);
      return [
        {
          name: `checkpoint commit → client p50 (${SUBSCRIBERS} subscribers, ${CHECKPOINTS_PER_SECOND}/s)`,
          value: p50,
          unit: 'ms',
          baselineName: 'commit → plain LISTEN p50',
          baseline: percentile(listenLatencies, 50),
        },
        {
          name: `checkpoint commit → client p99 (${SUBSCRIBERS} subscribers, ${CHECKPOINTS_PER_SECOND}/s)`,
          value: p99,
          unit: 'ms',
          baselineName: 'commit → plain LISTEN p99',
          baseline: percentile(listenLatencies, 99),
          target: `p99 ≤ ${TARGET_P99_MS} ms`,
          met: p99 <= TARGET_P99_MS,
        },
        {
          name: `API process memory per subscriber (${SUBSCRIBERS} open)`,
          value: perSubscriber / 1024,
          unit: 'KiB RSS',
          baselineName: 'per idle keep-alive HTTP connection',
          baseline: plainPer / 1024,
        },
      ];
    } finally {
      for (const s of subscribers) s.close();
      await listener.end().catch(() => undefined);
      for (const s of services) await s.stop();
      await pool.end();
      await db.drop();
    }
  },
};
