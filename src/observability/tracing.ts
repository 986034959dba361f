/**
 * OpenTelemetry tracing, off unless an OTLP endpoint is configured (OTEL_* variables, read by
 * src/config.ts). One trace runs from the POST that created a job to each attempt of its webhook: the
 * POST's context (W3C `traceparent`, continuing the caller's when it sent one) is stored with the job,
 * and the worker and the dispatcher continue it. Spans: the POST (server), the job's wait in the queue,
 * each execution (its chunks and checkpoints are counted on it, not one span each, so a job of a million
 * chunks makes one span per execution), the completion, and each webhook attempt (client).
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  createContextKey,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import type { TracingSettings } from '../config.ts';
import { WorkerSpanExporter } from './tracing-export.ts';

/** The trace context stored with a job (jobs.trace_context): the W3C headers of the span that created it. */
export type StoredContext = { traceparent: string; tracestate?: string };

/** What the worker reads of a job (with its claim) to continue its trace. */
export interface StoredTrace {
  trace_context: unknown;
  created_at: Date;
}

const TRACER = 'longhaul';

function sampler(s: TracingSettings): Sampler {
  const ratio = new TraceIdRatioBasedSampler(s.samplerArg);
  switch (s.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** The provider of this process, shared by the services it runs (tests run several). */
let active: { provider: TracerProvider; tracer: Tracer; users: number } | undefined;

export interface Tracing {
  /** Sends the spans still buffered and unregisters the provider once no service uses it. */
  stop(): Promise<void>;
}

/** Starts exporting spans when `settings.url` is set; otherwise every span below is a no-op. */
export function startTracing(settings: TracingSettings): Tracing {
  if (settings.url === undefined) return { stop: async () => undefined };
  if (active === undefined) {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ ...settings.resourceAttributes, 'service.name': settings.serviceName }),
      sampler: sampler(settings),
      spanProcessors: [
        new BatchSpanProcessor({
          ...settings.batch,
          exporter: new WorkerSpanExporter({
            url: settings.url,
            protocol: settings.protocol,
            headers: settings.headers,
          }),
        }),
      ],
    });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
    active = { provider, tracer: provider.getTracer(TRACER), users: 0 };
  }
  const mine = active;
  mine.users++;
  let stopped = false;
  return {
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await mine.provider.forceFlush();
      if (--mine.users > 0 || active !== mine) return;
      active = undefined;
      await mine.provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** Whether spans are being recorded in this process (then the worker and dispatcher read stored contexts). */
export function tracingActive(): boolean {
  return active !== undefined;
}

/** The context a stored trace context continues; the root when there is none. */
function continued(stored: unknown): Context {
  if (typeof stored !== 'object' || stored === null || !('traceparent' in stored)) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, stored);
}

/** The active span's ids for a log line, or nothing. */
export function logIds(): { trace_id?: string; span_id?: string } {
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

function ended(span: Span, error?: unknown): void {
  if (error !== undefined) {
    const message = error instanceof Error ? error.message : JSON.stringify(error);
    span.recordException(error instanceof Error ? error : message);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
  }
  span.end();
}

/**
 * Runs `handle` in a server span for an incoming request, continuing the caller's `traceparent`.
 * `handle` returns the response status, which ends the span (5xx marks it failed).
 */
export async function serverSpan(
  name: string,
  headers: Record<string, string | string[] | undefined>,
  attributes: Attributes,
  handle: () => Promise<number>,
): Promise<number> {
  if (active === undefined) return handle();
  // Without a traceparent the propagator would find nothing: the span starts a trace.
  const parent = headers.traceparent === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, headers);
  const span = active.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  try {
    const status = await context.with(trace.setSpan(parent, span), handle);
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    return status;
  } catch (err) {
    ended(span, err);
    throw err;
  } finally {
    if (span.isRecording()) span.end();
  }
}

/** The active span's context as stored with a job (null when tracing is off or the span is not sampled). */
export function currentContext(): StoredContext | null {
  if (active === undefined) return null;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const traceparent = carrier.traceparent;
  if (traceparent === undefined) return null;
  return carrier.tracestate === undefined ? { traceparent } : { traceparent, tracestate: carrier.tracestate };
}

/** One execution of a job as a span, with its chunks and checkpoints counted on it. */
export interface ExecutionTrace {
  /** Runs `fn` with the execution span active: its log lines carry the span's ids, its chunks are counted on it. */
  run<T>(fn: () => Promise<T>): Promise<T>;
  end(error?: unknown): void;
}

const NO_EXECUTION: ExecutionTrace = { run: (fn) => fn(), end: () => undefined };

interface Counts {
  chunks: number;
  checkpoints: number;
  checkpointSeconds: number;
}
const COUNTS = createContextKey('longhaul.execution.counts');

/** Counts a chunk or a checkpoint on the execution span of the active context, if any. */
export function countOnExecution(kind: 'chunk' | 'checkpoint', seconds = 0): void {
  const counts = context.active().getValue(COUNTS) as Counts | undefined;
  if (counts === undefined) return;
  if (kind === 'chunk') counts.chunks++;
  else {
    counts.checkpoints++;
    counts.checkpointSeconds += seconds;
  }
}

/**
 * Starts the span of an execution, continuing the trace stored with the job (read with its claim, so
 * tracing costs no query of its own); before a job's first execution, also the span of its wait in the
 * queue, from its creation until now.
 */
export function startExecution(
  stored: StoredTrace,
  job: { id: string; type: string; attempt: number; first: boolean },
): ExecutionTrace {
  if (active === undefined) return NO_EXECUTION;
  const tracer = active.tracer;
  const parent = continued(stored.trace_context);
  const attributes = { 'longhaul.job.id': job.id, 'longhaul.job.type': job.type, 'longhaul.job.attempt': job.attempt };
  // The wait's sibling, the execution, carries the job's type and attempt; the wait needs only the id.
  if (job.first)
    tracer
      .startSpan('job queue wait', { attributes: { 'longhaul.job.id': job.id }, startTime: stored.created_at }, parent)
      .end();
  const span = tracer.startSpan(`job execute ${job.type}`, { kind: SpanKind.CONSUMER, attributes }, parent);
  const counts: Counts = { chunks: 0, checkpoints: 0, checkpointSeconds: 0 };
  const ctx = trace.setSpan(parent, span).setValue(COUNTS, counts);
  return {
    run: (fn) => context.with(ctx, fn),
    end: (error) => {
      span.setAttributes({
        'longhaul.execution.chunks': counts.chunks,
        'longhaul.execution.checkpoints': counts.checkpoints,
        'longhaul.execution.checkpoint_seconds': counts.checkpointSeconds,
      });
      ended(span, error);
    },
  };
}

/** A span around the completion of a job (its result and terminal state written), child of the active execution. */
export async function completionSpan<T>(fn: () => Promise<T>): Promise<T> {
  if (active === undefined) return fn();
  const span = active.tracer.startSpan('job complete');
  try {
    const out = await context.with(trace.setSpan(context.active(), span), fn);
    span.end();
    return out;
  } catch (err) {
    ended(span, err);
    throw err;
  }
}

/**
 * One webhook attempt as a client span continuing the job's stored context; `send` gets the headers
 * that carry the span (`traceparent`) to the receiver and returns the response's status (0: none).
 */
export async function webhookAttemptSpan<T extends { statusCode?: number | null; kind: string }>(
  stored: unknown,
  target: { url: string; deliveryId: string; attempt: number },
  send: (headers: Record<string, string>) => Promise<T>,
): Promise<T> {
  if (active === undefined) return send({});
  const url = new URL(target.url);
  const parent = continued(stored);
  const span = active.tracer.startSpan(
    'POST',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'http.request.method': 'POST',
        // The host, never the path or query: a callback URL's path may hold a credential.
        'server.address': url.hostname,
        'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
        'longhaul.delivery.id': target.deliveryId,
        'longhaul.delivery.attempt': target.attempt,
      },
    },
    parent,
  );
  const ctx = trace.setSpan(parent, span);
  const headers: Record<string, string> = {};
  propagation.inject(ctx, headers);
  try {
    const result = await context.with(ctx, () => send(headers));
    if (typeof result.statusCode === 'number') span.setAttribute('http.response.status_code', result.statusCode);
    span.setAttribute('longhaul.delivery.outcome', result.kind);
    if (result.kind !== 'success') span.setStatus({ code: SpanStatusCode.ERROR, message: result.kind });
    span.end();
    return result;
  } catch (err) {
    ended(span, err);
    throw err;
  }
}
