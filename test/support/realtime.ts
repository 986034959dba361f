/** Clients and event writers for the live-progress tests: an SSE reader over fetch, a WebSocket collector, checkpoints written as the worker writes them. */
import type { Queryable } from '../../src/db/pool.ts';
import { JOB_EVENTS_CHANNEL } from '../../src/jobs/repository.ts';
import { readEvents } from '../../src/realtime/events.ts';
import type { TestService } from './service.ts';
import { transition } from './status.ts';

export interface Message {
  type: 'snapshot' | 'progress' | 'status';
  seq: number;
  processed?: number;
  total?: number | null;
  percent?: number | null;
  status?: string;
  job?: { status: string; progress: { processed: number } };
}

/**
 * A job's status events as every stream reads them (the stored ones and the RUNNING its row carries,
 * src/realtime/events.ts), oldest first.
 */
export async function statusEvents(
  db: Queryable,
  jobId: string,
): Promise<Array<{ seq: number; status: string; at: Date }>> {
  const events = await readEvents(db, jobId, 0, 10_000);
  return events
    .filter((e) => e.kind === 'status')
    .map((e) => ({ seq: e.seq, status: String((e.data as { status?: unknown }).status), at: e.createdAt }));
}

/** Polls `check` until it returns true or the deadline passes. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A one-chunk job submitted through the service's API and moved to RUNNING, so its events can be written by hand. */
export async function runningJob(svc: TestService): Promise<string> {
  const res = await svc.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } },
  });
  const id = ((await res.json()) as { id: string }).id;
  await transition(svc.service.pool, id, 'RUNNING');
  return id;
}

/**
 * A checkpoint as the worker commits it (src/jobs/lifecycle.ts writeCheckpoint): progress, the next
 * event_seq, a `progress` event and its announcement, in one statement. Returns the event's seq.
 */
export async function writeProgress(
  db: Queryable,
  jobId: string,
  processed: number,
  total: number | null,
): Promise<number> {
  const { rows } = await db.query<{ seq: number }>(
    `WITH u AS (
       UPDATE jobs SET processed = $2, total = $3, event_seq = event_seq + 1, updated_at = now() WHERE id = $1
       RETURNING id, event_seq, processed, total),
     e AS (
       INSERT INTO job_events (job_id, seq, kind, data)
       SELECT id, event_seq, 'progress', jsonb_build_object('processed', processed, 'total', total,
                'percent', longhaul_progress_percent(processed, total))
         FROM u)
     SELECT event_seq AS seq, pg_notify('${JOB_EVENTS_CHANNEL}', id::text || ':' || event_seq::text) FROM u`,
    [jobId, processed, total],
  );
  const seq = rows[0]?.seq;
  if (seq === undefined) throw new Error(`no job ${jobId}`);
  return seq;
}

/** `count` checkpoints of one item each in one statement (volume for the backpressure tests), one announcement per event. */
export async function writeProgressBatch(db: Queryable, jobId: string, count: number, total: number): Promise<number> {
  const { rows } = await db.query<{ seq: number }>(
    `WITH u AS (
       UPDATE jobs SET processed = processed + $2, total = $3, event_seq = event_seq + $2, updated_at = now() WHERE id = $1
       RETURNING id, event_seq, processed),
     e AS (
       INSERT INTO job_events (job_id, seq, kind, data)
       SELECT id, event_seq - $2 + i, 'progress',
              jsonb_build_object('processed', processed - $2 + i, 'total', $3::bigint,
                                 'percent', longhaul_progress_percent(processed - $2 + i, $3::bigint))
         FROM u, generate_series(1, $2::int) AS i
       RETURNING job_id, seq)
     SELECT max(seq) AS seq, count(pg_notify('${JOB_EVENTS_CHANNEL}', job_id::text || ':' || seq::text)) FROM e`,
    [jobId, count, total],
  );
  const seq = rows[0]?.seq;
  if (seq === undefined || seq === null) throw new Error(`no job ${jobId}`);
  return seq;
}

/** Reads an SSE response as it arrives; `messages` fills up, `ended` settles when the server ends the stream. */
export class SseReader {
  readonly messages: Message[] = [];
  readonly ids: string[] = [];
  readonly ended: Promise<void>;
  readonly #abort: AbortController;

  constructor(res: Response, abort: AbortController) {
    this.#abort = abort;
    this.ended = this.#read(res);
  }

  static async open(
    url: string,
    headers: Record<string, string> = {},
  ): Promise<{ res: Response; reader: SseReader | undefined }> {
    const abort = new AbortController();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
    if (res.status !== 200 || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream'))
      return { res, reader: undefined };
    return { res, reader: new SseReader(res, abort) };
  }

  async #read(res: Response): Promise<void> {
    const body = res.body;
    if (body === null) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          const id = block.split('\n').find((l) => l.startsWith('id: '));
          if (data === '') continue;
          this.messages.push(JSON.parse(data) as Message);
          if (id !== undefined) this.ids.push(id.slice(4));
        }
      }
    } catch (err) {
      if (!this.#abort.signal.aborted) throw err;
    }
  }

  close(): void {
    this.#abort.abort();
  }
}

/** A WebSocket that collects the messages it receives. */
export class WsReader {
  readonly messages: Message[] = [];
  readonly ws: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;

  constructor(url: string, headers?: Record<string, string>) {
    // Node's WebSocket (undici) accepts headers as a non-standard option; browsers use ?token= instead.
    this.ws = headers === undefined ? new WebSocket(url) : new WebSocket(url, { headers });
    this.ws.addEventListener('message', (e: MessageEvent) => this.messages.push(JSON.parse(String(e.data)) as Message));
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener('open', () => resolve());
      this.ws.addEventListener('error', () => reject(new Error('WebSocket failed to open')));
    });
    this.closed = new Promise((resolve) =>
      this.ws.addEventListener('close', (e: CloseEvent) => resolve({ code: e.code, reason: e.reason })),
    );
  }
}

/** The sequence numbers of messages after the snapshot, checked to be contiguous from `from + 1`. */
export function seqs(messages: Message[]): number[] {
  return messages.filter((m) => m.type !== 'snapshot').map((m) => m.seq);
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}
