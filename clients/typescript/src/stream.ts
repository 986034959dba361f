/** Reads a job's Server-Sent Events (eventsource-parser) as typed stream messages. */
import { EventSourceParserStream } from 'eventsource-parser/stream';
import type { components } from './openapi.ts';

export type StreamMessage = components['schemas']['StreamMessage'];
export type JobStatus = components['schemas']['JobStatus'];

const TERMINAL: ReadonlySet<JobStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

/** True for the last message a job's stream sends: a terminal status, or a snapshot of a finished job. */
export function endsStream(m: StreamMessage): boolean {
  return m.type === 'status' ? isTerminal(m.status) : m.type === 'snapshot' && isTerminal(m.job.status);
}

/** The messages of one SSE response body, until it ends; the body is cancelled if the caller stops early. */
export async function* sseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<StreamMessage> {
  const reader = body
    // DOM's TextDecoderStream takes any BufferSource, which its pipe types do not narrow to Uint8Array.
    .pipeThrough(new TextDecoderStream() as ReadableWritablePair<string, Uint8Array>)
    .pipeThrough(new EventSourceParserStream())
    .getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (value.data !== '') yield JSON.parse(value.data) as StreamMessage;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}
