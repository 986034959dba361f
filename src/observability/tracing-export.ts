/**
 * A span exporter that hands each batch to a worker thread (./tracing-export-worker.ts), where the
 * official OTLP/HTTP exporter encodes and sends it. Encoding a batch is the largest single cost of
 * tracing, and on the event loop it would hold up the requests and jobs behind it; the batch crosses
 * instead as one flat array of the fields the OTLP encoders read, which costs a fraction of encoding it
 * (pino's transports move log writing off the event loop the same way).
 */
import { Worker } from 'node:worker_threads';
import type { Attributes, Link } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { TracingSettings } from '../config.ts';

/** A link as it crosses: its trace state as the header value. */
export interface PlainLink {
  traceId: string;
  spanId: string;
  traceFlags: number;
  traceState: string | undefined;
  isRemote: boolean | undefined;
  attributes: Attributes | undefined;
  droppedAttributesCount: number | undefined;
}

/** A batch: the attributes of its resource (one provider, one resource) and its spans, flat. */
export interface ExportMessage {
  id: number;
  resource: Attributes;
  spans: number;
  flat: unknown[];
}

/** The worker's answer to one batch. */
export interface ExportAnswer {
  id: number;
  error?: string;
}

/** What the worker needs to build the exporter: where to send, how to encode, which headers. */
export type WorkerSettings = Pick<TracingSettings, 'protocol' | 'headers'> & { url: string };

function plainLink(link: Link): PlainLink {
  const c = link.context;
  return {
    traceId: c.traceId,
    spanId: c.spanId,
    traceFlags: c.traceFlags,
    traceState: c.traceState?.serialize(),
    isRemote: c.isRemote,
    attributes: link.attributes,
    droppedAttributesCount: link.droppedAttributesCount,
  };
}

/**
 * Each span's fields, in the order ./tracing-export-worker.ts reads them back, then its attribute count
 * and each key and value. Events (rare: a recorded exception) cross as the SDK's plain objects.
 */
function flatten(spans: ReadableSpan[]): unknown[] {
  const out: unknown[] = [];
  for (const s of spans) {
    const c = s.spanContext();
    const scope = s.instrumentationScope;
    out.push(
      c.traceId,
      c.spanId,
      c.traceFlags,
      c.traceState?.serialize(),
      s.parentSpanContext?.spanId,
      s.parentSpanContext?.isRemote,
      s.name,
      s.kind,
      s.startTime[0],
      s.startTime[1],
      s.endTime[0],
      s.endTime[1],
      s.status.code,
      s.status.message,
      s.events.length === 0 ? undefined : s.events,
      s.droppedEventsCount,
      s.links.length === 0 ? undefined : s.links.map(plainLink),
      s.droppedLinksCount,
      s.droppedAttributesCount,
      scope.name,
      scope.version,
      scope.schemaUrl,
    );
    const keys = Object.keys(s.attributes);
    out.push(keys.length);
    for (const k of keys) out.push(k, s.attributes[k]);
  }
  return out;
}

export class WorkerSpanExporter implements SpanExporter {
  readonly #settings: WorkerSettings;
  #worker: Worker | undefined;
  #next = 0;
  readonly #pending = new Map<number, (result: ExportResult) => void>();
  #stopped = false;

  constructor(settings: WorkerSettings) {
    this.#settings = settings;
    // Loading the exporter into a new thread costs a moment of CPU: at startup, not with the first batch.
    this.#thread();
  }

  /** The worker, started with the exporter, and again with the next batch after one died. */
  #thread(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(new URL('./tracing-export-worker.ts', import.meta.url), { workerData: this.#settings });
    worker.on('message', (answer: ExportAnswer) => {
      const done = this.#pending.get(answer.id);
      this.#pending.delete(answer.id);
      if (this.#pending.size === 0) worker.unref();
      done?.(
        answer.error === undefined
          ? { code: ExportResultCode.SUCCESS }
          : { code: ExportResultCode.FAILED, error: new Error(answer.error) },
      );
    });
    const died = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const done of this.#pending.values()) done({ code: ExportResultCode.FAILED, error });
      this.#pending.clear();
    };
    worker.on('error', died);
    worker.on('exit', (code) => died(new Error(`the span export thread exited with ${code}`)));
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    const first = spans[0];
    if (this.#stopped || first === undefined) {
      resultCallback({ code: this.#stopped ? ExportResultCode.FAILED : ExportResultCode.SUCCESS });
      return;
    }
    const worker = this.#thread();
    const id = this.#next++;
    const message: ExportMessage = {
      id,
      resource: first.resource.attributes,
      spans: spans.length,
      flat: flatten(spans),
    };
    this.#pending.set(id, resultCallback);
    // Keeps the process up until the batch is sent, as the exporter's own request would.
    worker.ref();
    worker.postMessage(message);
  }

  /** Resolves once every batch already handed over is answered. */
  async forceFlush(): Promise<void> {
    await Promise.all(
      [...this.#pending].map(
        ([id, done]) =>
          new Promise<void>((resolve) =>
            this.#pending.set(id, (result) => {
              done(result);
              resolve();
            }),
          ),
      ),
    );
  }

  async shutdown(): Promise<void> {
    this.#stopped = true;
    await this.forceFlush();
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }
}
