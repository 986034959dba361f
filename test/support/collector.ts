/**
 * A real OTLP/HTTP trace receiver on 127.0.0.1, as a collector's: it decodes each export, protobuf
 * (`application/x-protobuf`, with the official OTLP .proto files in ./otlp, Apache-2.0, from
 * opentelemetry-proto) or JSON (`application/json`), and keeps its spans with hex ids.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export interface CollectedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  /** Attribute values as strings or numbers (OTLP's intValue, doubleValue, stringValue or boolValue). */
  attributes: Record<string, string | number | boolean>;
  status: { code: number; message: string };
  events: Array<{ name: string; attributes: Record<string, string | number | boolean> }>;
  links: Array<{
    traceId: string;
    spanId: string;
    traceState: string;
    attributes: Record<string, string | number | boolean>;
  }>;
}

export interface Collector {
  url: string;
  /** Every span received so far; the exports are decoded when this is read, not as they arrive. */
  readonly spans: CollectedSpan[];
  /** How many exports arrived in each encoding. */
  exports: { protobuf: number; json: number };
  close(): Promise<void>;
}

const PROTOS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'otlp');

function loadRequestType(): protobuf.Type {
  const root = new protobuf.Root();
  // The .proto files import each other by their path from the repository's root.
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTOS, target));
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto', { keepCase: false });
  return root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
}

interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
}
type WireAttributes = Array<{ key: string; value?: AnyValue }>;
interface WireSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  attributes?: WireAttributes;
  status?: { code?: number; message?: string };
  events?: Array<{ name?: string; attributes?: WireAttributes }>;
  links?: Array<{ traceId?: string; spanId?: string; traceState?: string; attributes?: WireAttributes }>;
}
interface WireRequest {
  resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: WireSpan[] }> }>;
}

/** Ids: protobuf bytes come as base64 from toObject, OTLP/JSON sends hex. */
const hex = (id: string | undefined) =>
  id === undefined || id === '' ? '' : /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex');

function value(v: AnyValue | undefined): string | number | boolean {
  if (v === undefined) return '';
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  return v.stringValue ?? '';
}

const attributesOf = (a: WireAttributes | undefined) =>
  Object.fromEntries((a ?? []).map((kv) => [kv.key, value(kv.value)]));

function spansOf(request: WireRequest): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  for (const r of request.resourceSpans ?? [])
    for (const s of r.scopeSpans ?? [])
      for (const span of s.spans ?? [])
        out.push({
          traceId: hex(span.traceId),
          spanId: hex(span.spanId),
          parentSpanId: hex(span.parentSpanId),
          name: span.name ?? '',
          kind: span.kind ?? 0,
          attributes: attributesOf(span.attributes),
          status: { code: span.status?.code ?? 0, message: span.status?.message ?? '' },
          events: (span.events ?? []).map((e) => ({ name: e.name ?? '', attributes: attributesOf(e.attributes) })),
          links: (span.links ?? []).map((l) => ({
            traceId: hex(l.traceId),
            spanId: hex(l.spanId),
            traceState: l.traceState ?? '',
            attributes: attributesOf(l.attributes),
          })),
        });
  return out;
}

export async function startCollector(): Promise<Collector> {
  const requestType = loadRequestType();
  const spans: CollectedSpan[] = [];
  // Kept as received: decoding while a benchmark runs would take the CPU it measures.
  const undecoded: Array<{ json: boolean; body: Buffer }> = [];
  const exports = { protobuf: 0, json: 0 };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = req.headers['content-type'] ?? '';
      const json = type.startsWith('application/json');
      if (!json && !type.startsWith('application/x-protobuf')) {
        res.writeHead(415).end();
        return;
      }
      exports[json ? 'json' : 'protobuf']++;
      undecoded.push({ json, body });
      // An empty ExportTraceServiceResponse in the request's encoding: full success.
      if (type.startsWith('application/json')) res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`,
    get spans() {
      for (const { json, body } of undecoded.splice(0)) {
        const request: WireRequest = json
          ? (JSON.parse(body.toString('utf8')) as WireRequest)
          : requestType.toObject(requestType.decode(body), { bytes: String, longs: String });
        spans.push(...spansOf(request));
      }
      return spans;
    },
    exports,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
