/**
 * The span exporter that encodes and sends on a worker thread (src/observability/tracing-export.ts):
 * what a span carries crosses to the thread whole (events, links, trace state, status), a collector that
 * refuses a batch fails it without harming the process, and a stopped exporter starts no thread again.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { SpanKind, SpanStatusCode, TraceFlags } from '@opentelemetry/api';
import { ExportResultCode, TraceState, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, TracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerSpanExporter } from '../src/observability/tracing-export.ts';
import { startCollector, type Collector } from './support/collector.ts';

let collector: Collector;
beforeAll(async () => {
  collector = await startCollector();
});
afterAll(async () => {
  await collector.close();
});

/** Ended spans as the SDK hands them to an exporter. */
function spans(): ReadableSpan[] {
  const ended: ReadableSpan[] = [];
  const keep: SpanProcessor = {
    onStart: () => undefined,
    onEnd: (span) => ended.push(span),
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'export-test' }),
    sampler: new AlwaysOnSampler(),
    spanProcessors: [keep],
  });
  const tracer = provider.getTracer('longhaul');
  const linked = {
    traceId: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    spanId: 'bbbbbbbbbbbbbbbb',
    traceFlags: TraceFlags.SAMPLED,
    traceState: new TraceState('vendor=x'),
    isRemote: true,
  };
  const span = tracer.startSpan('failing work', {
    kind: SpanKind.CLIENT,
    attributes: { 'longhaul.job.id': 'j-1', 'longhaul.job.attempt': 2, flag: true, ratio: 0.5, tags: ['a', 'b'] },
    links: [{ context: linked, attributes: { why: 'retry of' } }],
  });
  span.recordException(new Error('boom'));
  span.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
  span.end();
  tracer.startSpan('plain').end();
  return ended;
}

function exported(exporter: WorkerSpanExporter, batch: ReadableSpan[]): Promise<ExportResult> {
  return new Promise((resolve) => exporter.export(batch, resolve));
}

describe('WorkerSpanExporter', () => {
  it('sends every field of each span through the thread, in protobuf and in JSON', async () => {
    for (const protocol of ['http/protobuf', 'http/json'] as const) {
      const before = collector.spans.length;
      const exporter = new WorkerSpanExporter({ url: `${collector.url}/v1/traces`, protocol, headers: {} });
      const batch = spans();
      expect((await exported(exporter, batch)).code).toBe(ExportResultCode.SUCCESS);
      await exporter.shutdown();
      const got = collector.spans.slice(before);
      expect(got.map((s) => s.name)).toEqual(['failing work', 'plain']);
      const [failing] = got;
      const original = batch[0]?.spanContext();
      expect(failing).toMatchObject({
        traceId: original?.traceId,
        spanId: original?.spanId,
        parentSpanId: '',
        kind: SpanKind.CLIENT + 1,
        attributes: { 'longhaul.job.id': 'j-1', 'longhaul.job.attempt': 2, flag: true, ratio: 0.5 },
        status: { code: SpanStatusCode.ERROR, message: 'boom' },
        events: [{ name: 'exception', attributes: { 'exception.message': 'boom', 'exception.type': 'Error' } }],
        links: [{ traceId: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', spanId: 'bbbbbbbbbbbbbbbb', traceState: 'vendor=x' }],
      });
      expect(failing?.links[0]?.attributes).toEqual({ why: 'retry of' });
    }
  });

  it('fails the batch a collector refuses, and goes on', async () => {
    const refusing = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(400, { 'content-type': 'application/json' }).end('{}'));
    }).listen(0, '127.0.0.1');
    await once(refusing, 'listening');
    const address = refusing.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const exporter = new WorkerSpanExporter({
      url: `http://127.0.0.1:${port}/v1/traces`,
      protocol: 'http/json',
      headers: {},
    });
    const result = await exported(exporter, spans());
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(result.error).toBeInstanceOf(Error);
    // The thread lives on: the next batch is answered too.
    expect((await exported(exporter, spans())).code).toBe(ExportResultCode.FAILED);
    await exporter.shutdown();
    refusing.close();
    // Stopped: a batch after shutdown fails at once instead of starting a thread again.
    expect((await exported(exporter, spans())).code).toBe(ExportResultCode.FAILED);
  });
});
