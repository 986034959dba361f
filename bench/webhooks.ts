/**
 * Issue 4: webhook deliveries per second to a local receiver that answers 200 at once, beside raw
 * undici POSTs per second to the same receiver at the same concurrency in the same run (measured just
 * before and just after the deliveries, and averaged); and the time
 * from a job's terminal state to the receiver's first byte (p50/p99), beside a raw POST's.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Agent } from 'undici';
import { PgListener } from '../src/db/listener.ts';
import { createPool } from '../src/db/pool.ts';
import { loadConfig } from '../src/config.ts';
import { transition } from '../test/support/status.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { createTenant } from '../src/tenants/repository.ts';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import { Dispatcher } from '../src/webhooks/dispatcher.ts';
import { outboxInsertSql } from '../src/webhooks/store.ts';
import { percentile, type BenchModule } from './harness.ts';
import { timedLoops } from './support.ts';

const CONCURRENCY = 32;
const RAW_SECONDS = 3;
/** Deliveries queued for the throughput run: enough for several seconds, bounded so the run stays short. */
const MIN_DELIVERIES = 3_000;
const MAX_DELIVERIES = 20_000;
const LATENCY_SAMPLES = 200;
const LATENCY_WARMUP = 20;

export const webhooksBench: BenchModule = {
  title: 'webhooks: deliveries/s vs raw undici POST/s, terminal state → receiver latency',
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = createPool(db.url, 8, 'bench-webhooks');
    const arrivals = new Map<string, number>();
    const waiters = new Map<string, () => void>();
    let received = 0;
    const server = createServer((req, res) => {
      const at = performance.now();
      received++;
      const key = req.url ?? '';
      arrivals.set(key, at);
      waiters.get(key)?.();
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    const config = loadConfig({
      DATABASE_URL: db.url,
      LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
      LONGHAUL_WEBHOOK_CONCURRENCY: String(CONCURRENCY),
      LONGHAUL_WEBHOOK_ENDPOINT_CONCURRENCY: String(CONCURRENCY),
    });
    const listener = new PgListener({ databaseUrl: db.url, log: createLogger('warn') });
    await listener.start();
    const newDispatcher = () =>
      new Dispatcher({
        pool,
        listener,
        settings: config.webhooks,
        allow: new CallbackAllowList(config.callbackAllow),
        log: createLogger('warn'),
        registry: createMetrics().registry,
      });
    try {
      const tenant = await createTenant(pool, 'bench');

      // Baseline: raw undici POSTs of a payload of the same size, same concurrency, same receiver.
      const sample = JSON.stringify({
        type: 'job.completed',
        timestamp: new Date().toISOString(),
        data: { id: crypto.randomUUID(), pad: 'x'.repeat(600) },
      });
      const agent = new Agent({ connections: CONCURRENCY });
      const post = async () => {
        const res = await agent.request({
          origin: base,
          path: '/raw',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: sample,
        });
        await res.body.dump();
      };
      await timedLoops(CONCURRENCY, 0.5, post);
      const raw = await timedLoops(CONCURRENCY, RAW_SECONDS, post);
      // Baseline of the latency rows: a raw POST's round trip to the same receiver, one at a time.
      const rawLatency: number[] = [];
      for (let i = 0; i < LATENCY_SAMPLES; i++) {
        const t0 = performance.now();
        const res = await agent.request({
          origin: base,
          path: `/raw-lat/${i}`,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: sample,
        });
        await res.body.dump();
        rawLatency.push(performance.now() - t0);
      }

      // Throughput: queue N terminal jobs' deliveries (through the outbox SQL), then let a dispatcher drain them.
      const n = Math.min(MAX_DELIVERIES, Math.max(MIN_DELIVERIES, Math.round(raw.perSecond * 4)));
      await pool.query(
        `INSERT INTO jobs (id, tenant_id, type, input, callback_url, max_attempts, status, finished_at)
         SELECT gen_random_uuid(), $1, 'synthetic', '{"chunks":1}', $2, 1, 'COMPLETED', now() FROM generate_series(1, $3)`,
        [tenant.id, `${base}/bulk`, n],
      );
      await pool.query(`WITH u AS (SELECT * FROM jobs WHERE tenant_id = $1) ${outboxInsertSql('u')}`, [tenant.id]);
      await pool.query('ANALYZE webhook_deliveries; ANALYZE webhook_attempts; ANALYZE webhook_endpoints; ANALYZE jobs');
      const before = received;
      const dispatcher = newDispatcher();
      const started = performance.now();
      await dispatcher.start();
      // Wait for the receiver to have them all before counting recorded rows: polling count(*) meanwhile
      // would take database time from the dispatcher being measured.
      while (received - before < n) await new Promise((r) => setTimeout(r, 5));
      for (;;) {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = 'SUCCEEDED'`,
        );
        if ((rows[0]?.n ?? 0) >= n) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const seconds = (performance.now() - started) / 1000;
      const perSecond = n / seconds;
      ctx.log(`${n} deliveries in ${seconds.toFixed(2)} s (${received - before} requests received)`);
      // The raw POSTs again: the baseline is the mean of before and after, so that the machine's speed
      // drifting across the run (it does, by tens of per cent) cancels rather than lands on either side.
      const rawAfter = await timedLoops(CONCURRENCY, RAW_SECONDS, post);
      await agent.close();
      const rawPerSecond = (raw.perSecond + rawAfter.perSecond) / 2;
      ctx.log(`raw undici POST/s: ${raw.perSecond.toFixed(0)} before, ${rawAfter.perSecond.toFixed(0)} after`);

      // Latency: one job at a time becomes COMPLETED; measured from just before the transition statement
      // (it commits on its own) to the moment the receiver has the request's headers.
      const latency: number[] = [];
      for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
        const path = `/lat/${i}`;
        const { rows } = await pool.query<{ id: string }>(
          `INSERT INTO jobs (id, tenant_id, type, input, callback_url, max_attempts, status) VALUES (gen_random_uuid(), $1, 'synthetic', '{}', $2, 1, 'RUNNING') RETURNING id`,
          [tenant.id, base + path],
        );
        const arrived = new Promise<void>((r) => waiters.set(path, r));
        const t0 = performance.now();
        await transition(pool, rows[0]?.id ?? '', 'COMPLETED', { result: { ok: true } });
        await arrived;
        if (i >= LATENCY_WARMUP) latency.push((arrivals.get(path) ?? t0) - t0);
      }
      await dispatcher.stop();

      const ratio = perSecond / rawPerSecond;
      const p50 = percentile(latency, 50);
      return [
        {
          name: `webhook deliveries/s (${CONCURRENCY} concurrent, signed, recorded)`,
          value: perSecond,
          unit: 'deliveries/s',
          baselineName: `raw undici POST/s (${CONCURRENCY} concurrent; mean of before and after)`,
          baseline: rawPerSecond,
          target: 'ratio ≥ 0.3',
          met: ratio >= 0.3,
        },
        {
          name: 'terminal state → receiver first byte p50',
          value: p50,
          unit: 'ms',
          baselineName: 'raw undici POST round trip p50',
          baseline: percentile(rawLatency, 50),
          target: 'p50 ≤ 20 ms',
          met: p50 <= 20,
        },
        {
          name: 'terminal state → receiver first byte p99',
          value: percentile(latency, 99),
          unit: 'ms',
          baselineName: 'raw undici POST round trip p99',
          baseline: percentile(rawLatency, 99),
        },
      ];
    } finally {
      await listener.stop();
      server.closeAllConnections();
      server.close();
      await pool.end();
      await db.drop();
    }
  },
};
