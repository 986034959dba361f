/**
 * One trace from the POST to the webhook: a real OTLP/HTTP receiver (JSON) collects the spans of a job
 * with a webhook, submitted with a caller's `traceparent`, and checks they form one trace with the right
 * parent links; the webhook request carries the attempt span's `traceparent`; log lines inside a span
 * carry its ids.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/observability/logger.ts';
import { startService, type Service } from '../src/service.ts';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { waitFor } from './support/worker.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: { stringValue?: string; intValue?: string | number } }>;
}

/** OTLP/JSON ids are hex; some encoders send base64: either way, hex. */
const hex = (id: string | undefined) =>
  id === undefined || id === '' ? '' : /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex');

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const SPAN_KIND = { server: 2, client: 3, consumer: 5 } as const;

let db: TestDatabase;
let service: Service;
let tenant: CreatedTenant;
let collector: Server;
let collectorUrl: string;
let rx: Receiver;
const spans: OtlpSpan[] = [];
const logLines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
      };
      for (const r of body.resourceSpans)
        for (const s of r.scopeSpans)
          for (const span of s.spans)
            spans.push({
              ...span,
              traceId: hex(span.traceId),
              spanId: hex(span.spanId),
              parentSpanId: hex(span.parentSpanId),
            });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  const address = collector.address();
  collectorUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
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
    OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
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
  await new Promise<void>((resolve) => collector.close(() => resolve()));
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
    const chunks = exec?.attributes?.find((a) => a.key === 'longhaul.execution.chunks')?.value.intValue;
    expect(Number(chunks)).toBe(3);
    // The receiver saw the attempt's span as the parent of its work.
    expect(hook.headers.traceparent).toBe(`00-${CALLER_TRACE}-${attempt?.spanId}-01`);
    // Log lines written inside a span carry its ids.
    expect(logLines.find((l) => l.msg === 'job completed' && l.job_id === id)).toMatchObject({
      trace_id: CALLER_TRACE,
      span_id: exec?.spanId,
    });
  });
});
