/**
 * One trace from the POST to the webhook: a real OTLP/HTTP receiver (protobuf, the default encoding;
 * test/support/collector.ts decodes it with the official .proto files) collects the spans of a job
 * with a webhook, submitted with a caller's `traceparent`, and checks they form one trace with the right
 * parent links; the webhook request carries the attempt span's `traceparent`; log lines inside a span
 * carry its ids.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/observability/logger.ts';
import { startService, type Service } from '../src/service.ts';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import { startCollector, type Collector } from './support/collector.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { waitFor } from './support/worker.ts';

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const SPAN_KIND = { server: 2, client: 3, consumer: 5 } as const;

let db: TestDatabase;
let service: Service;
let tenant: CreatedTenant;
let collector: Collector;
let rx: Receiver;
const logLines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  collector = await startCollector();
  rx = await startReceiver();
  db = await createTestDatabase();
  const config = loadConfig({
    DATABASE_URL: db.url,
    PORT: '0',
    HOST: '127.0.0.1',
    LONGHAUL_LOG_LEVEL: 'info',
    LONGHAUL_PG_POOL_MAX: '10',
    LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
    LONGHAUL_CALLBACK_ALLOW: '127.0.0.1',
    LONGHAUL_WEBHOOK_POLL_SECONDS: '0.1',
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    OTEL_SERVICE_NAME: 'longhaul-test',
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(JSON.parse(line) as never);
      done();
    },
  });
  service = await startService({ config, roles: ['api', 'worker'], log: createLogger('info', sink) });
  tenant = await createTenant(service.pool, 'traced');
});

afterAll(async () => {
  await service.stop();
  await db.drop();
  await rx.close();
  await collector.close();
});

describe('a job with a webhook', () => {
  it('makes one trace from the POST to the webhook attempt, continuing the caller’s traceparent', async () => {
    const res = await fetch(`${service.url}/v1/jobs`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tenant.api_key}`,
        'content-type': 'application/json',
        traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
      },
      body: JSON.stringify({ type: 'synthetic', input: { chunks: 3, chunk_ms: 0 }, callback_url: `${rx.url}/hook` }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const hook = await waitFor('the webhook', async () => rx.to('/hook')[0]);
    // The attempt's span ends once its result is in; the spans of this process go out when it stops.
    await waitFor('the delivery recorded', async () => {
      const { rows } = await service.pool.query<{ status: string }>(
        'SELECT status FROM webhook_deliveries WHERE job_id = $1',
        [id],
      );
      return rows[0]?.status === 'SUCCEEDED';
    });
    await service.stop();

    const spans = collector.spans;
    expect(collector.exports.json).toBe(0);
    expect(collector.exports.protobuf).toBeGreaterThan(0);
    const byName = (name: string) => spans.filter((s) => s.name === name);
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([CALLER_TRACE]));
    const [post] = byName('POST /v1/jobs');
    expect(post).toMatchObject({ kind: SPAN_KIND.server, parentSpanId: CALLER_SPAN });
    const [wait] = byName('job queue wait');
    const [exec] = byName('job execute synthetic');
    const [complete] = byName('job complete');
    const [attempt] = byName('POST');
    expect(wait?.parentSpanId).toBe(post?.spanId);
    expect(exec).toMatchObject({ kind: SPAN_KIND.consumer, parentSpanId: post?.spanId });
    expect(complete?.parentSpanId).toBe(exec?.spanId);
    expect(attempt).toMatchObject({ kind: SPAN_KIND.client, parentSpanId: post?.spanId });
    expect(exec?.attributes['longhaul.execution.chunks']).toBe(3);
    // The receiver saw the attempt's span as the parent of its work.
    expect(hook.headers.traceparent).toBe(`00-${CALLER_TRACE}-${attempt?.spanId}-01`);
    // Log lines written inside a span carry its ids.
    expect(logLines.find((l) => l.msg === 'job completed' && l.job_id === id)).toMatchObject({
      trace_id: CALLER_TRACE,
      span_id: exec?.spanId,
    });
  });
});

describe('OTEL_EXPORTER_OTLP_PROTOCOL=http/json', () => {
  it('sends the same spans as OTLP JSON', async () => {
    const before = collector.spans.length;
    const { json: jsonExports, protobuf: protobufExports } = collector.exports;
    const config = loadConfig({
      DATABASE_URL: db.url,
      PORT: '0',
      HOST: '127.0.0.1',
      LONGHAUL_LOG_LEVEL: 'warn',
      LONGHAUL_PG_POOL_MAX: '10',
      LONGHAUL_SHUTDOWN_TIMEOUT_SECONDS: '5',
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    });
    const json = await startService({ config, roles: ['api', 'worker'], log: createLogger('warn') });
    try {
      const res = await fetch(`${json.url}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } }),
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      await waitFor('the job completed', async () => {
        const { rows } = await json.pool.query<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [id]);
        return rows[0]?.status === 'COMPLETED';
      });
    } finally {
      await json.stop();
    }
    expect(collector.exports.json).toBeGreaterThan(jsonExports);
    expect(collector.exports.protobuf).toBe(protobufExports);
    const names = collector.spans.slice(before).map((s) => s.name);
    expect(names.sort()).toEqual(['POST /v1/jobs', 'job complete', 'job execute synthetic', 'job queue wait']);
  });
});
