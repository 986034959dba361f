/**
 * The thread that encodes and sends the spans ./tracing-export.ts hands it, with the official OTLP/HTTP
 * exporter (protobuf or JSON): each batch is read back from its flat array into the spans the exporter
 * reads, on one resource.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Attributes, HrTime, Link, SpanContext, SpanStatusCode } from '@opentelemetry/api';
import { hrTimeDuration, TraceState } from '@opentelemetry/core';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace';
import type { ExportAnswer, ExportMessage, PlainLink, WorkerSettings } from './tracing-export.ts';

type Scope = ReadableSpan['instrumentationScope'];

const settings = workerData as WorkerSettings;
const options = { url: settings.url, headers: settings.headers };
const exporter = settings.protocol === 'http/json' ? new JsonExporter(options) : new ProtobufExporter(options);

/** The resource of the last batch, kept while its attributes stay the same (they do: one provider). */
let resource: { key: string; value: Resource } | undefined;
function resourceOf(attributes: Attributes): Resource {
  const key = JSON.stringify(attributes);
  if (resource?.key !== key) resource = { key, value: resourceFromAttributes(attributes) };
  return resource.value;
}

/** One object per scope, as the encoders group a batch's spans by scope. */
const scopes = new Map<string, Scope>();
function scopeOf(name: string, version: string | undefined, schemaUrl: string | undefined): Scope {
  const key = `${name}\n${version ?? ''}\n${schemaUrl ?? ''}`;
  let scope = scopes.get(key);
  if (scope === undefined) scopes.set(key, (scope = { name, version, schemaUrl }));
  return scope;
}

const traceState = (s: string | undefined) => (s === undefined ? undefined : new TraceState(s));

function link(l: PlainLink): Link {
  return {
    context: {
      traceId: l.traceId,
      spanId: l.spanId,
      traceFlags: l.traceFlags,
      traceState: traceState(l.traceState),
      isRemote: l.isRemote,
    },
    attributes: l.attributes,
    droppedAttributesCount: l.droppedAttributesCount,
  };
}

/** The spans of a batch, read in the order tracing-export.ts wrote them. */
function spansOf(message: ExportMessage): ReadableSpan[] {
  const on = resourceOf(message.resource);
  const f = message.flat;
  let i = 0;
  const spans: ReadableSpan[] = [];
  for (let n = 0; n < message.spans; n++) {
    const ctx: SpanContext = {
      traceId: f[i++] as string,
      spanId: f[i++] as string,
      traceFlags: f[i++] as number,
      traceState: traceState(f[i++] as string | undefined),
    };
    const parentSpanId = f[i++] as string | undefined;
    const parentIsRemote = f[i++] as boolean | undefined;
    const name = f[i++] as string;
    const kind = f[i++] as number;
    const startTime: HrTime = [f[i++] as number, f[i++] as number];
    const endTime: HrTime = [f[i++] as number, f[i++] as number];
    const status = { code: f[i++] as SpanStatusCode, message: f[i++] as string | undefined };
    const events = (f[i++] as TimedEvent[] | undefined) ?? [];
    const droppedEventsCount = f[i++] as number;
    const links = ((f[i++] as PlainLink[] | undefined) ?? []).map(link);
    const droppedLinksCount = f[i++] as number;
    const droppedAttributesCount = f[i++] as number;
    const scope = scopeOf(f[i++] as string, f[i++] as string | undefined, f[i++] as string | undefined);
    const attributes: Attributes = {};
    for (let a = f[i++] as number; a > 0; a--) attributes[f[i++] as string] = f[i++];
    spans.push({
      name,
      kind,
      spanContext: () => ctx,
      parentSpanContext:
        parentSpanId === undefined
          ? undefined
          : { traceId: ctx.traceId, spanId: parentSpanId, traceFlags: ctx.traceFlags, isRemote: parentIsRemote },
      startTime,
      endTime,
      duration: hrTimeDuration(startTime, endTime),
      ended: true,
      status,
      attributes,
      events,
      links,
      resource: on,
      instrumentationScope: scope,
      droppedAttributesCount,
      droppedEventsCount,
      droppedLinksCount,
    });
  }
  return spans;
}

parentPort?.on('message', (message: ExportMessage) => {
  exporter.export(spansOf(message), (result) => {
    // The exporter's ExportResultCode comes from its own copy of @opentelemetry/core: SUCCESS is 0.
    const answer: ExportAnswer =
      Number(result.code) === 0
        ? { id: message.id }
        : { id: message.id, error: result.error?.message ?? 'span export failed' };
    parentPort?.postMessage(answer);
  });
});
