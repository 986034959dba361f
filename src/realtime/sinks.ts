/** The two transports of an event stream: Server-Sent Events (hono/streaming) and WebSocket (@hono/node-ws over `ws`). */
import type { SSEStreamingApi } from 'hono/streaming';
import type { CloseReason, Frame, StreamSink } from './hub.ts';

/**
 * Bytes a WebSocket may hold in user space before a write waits for the socket to drain; beyond it the
 * kernel's buffers are full too, the client is slow, and the hub coalesces instead of buffering.
 */
const WS_HIGH_WATER_BYTES = 64 * 1024;
/** WebSocket close codes (RFC 6455): normal closure, and going away (the server is shutting down). */
const WS_NORMAL = 1000;
const WS_GOING_AWAY = 1001;
const WS_OPEN = 1;

/** The part of the Node response under a stream that the sink uses (to measure and to cut a dead peer). */
export interface NodeResponseLike {
  readonly writableLength: number;
  destroy(): void;
}

export class SseSink implements StreamSink {
  readonly transport = 'sse';
  readonly #stream: SSEStreamingApi;
  readonly #res: NodeResponseLike | undefined;
  #pingPending = false;

  constructor(stream: SSEStreamingApi, res: NodeResponseLike | undefined) {
    this.#stream = stream;
    this.#res = res;
  }

  async send(frame: Frame): Promise<void> {
    // writeSSE resolves once the response stream has taken the frame: node-server waits for the
    // socket's 'drain', so this await is where a slow client pushes back.
    await this.#stream.writeSSE({ id: String(frame.seq), event: frame.type, data: frame.json });
  }

  /** A comment line keeps proxies from timing out an idle stream; one still unsent a whole interval later means the peer is gone. */
  ping(): boolean {
    if (this.#pingPending) return false;
    if (this.#stream.closed || this.#stream.aborted) return true;
    this.#pingPending = true;
    void this.#stream.write(': ping\n\n').then(() => (this.#pingPending = false));
    return true;
  }

  bufferedBytes(): number {
    return this.#res?.writableLength ?? 0;
  }

  close(reason: CloseReason): void {
    // A normal end is the route's: its callback returns and streamSSE closes the stream.
    if (reason !== 'dead') return;
    this.#stream.abort();
    this.#res?.destroy();
  }
}

/** The `ws` WebSocket under @hono/node-ws, as far as the sink uses it (the package ships no types). */
export interface RawWebSocket {
  readonly bufferedAmount: number;
  readonly readyState: number;
  send(data: string, cb: (err?: Error) => void): void;
  ping(): void;
  close(code: number, reason: string): void;
  terminate(): void;
  on(event: 'pong', listener: () => void): unknown;
}

export class WebSocketSink implements StreamSink {
  readonly transport = 'websocket';
  readonly #ws: RawWebSocket;
  #awaitingPong = false;

  constructor(ws: RawWebSocket) {
    this.#ws = ws;
    ws.on('pong', () => (this.#awaitingPong = false));
  }

  send(frame: Frame): Promise<void> {
    if (this.#ws.readyState !== WS_OPEN) return Promise.reject(new Error('the WebSocket is closed'));
    return new Promise((resolve, reject) => {
      this.#ws.send(frame.json, (err) => (err === undefined || err === null ? resolve() : reject(err)));
      // Room left: carry on at once; otherwise wait until this frame reached the socket.
      if (this.#ws.bufferedAmount < WS_HIGH_WATER_BYTES) resolve();
    });
  }

  /** A protocol ping (browsers answer by themselves); no pong since the previous one means the peer is gone. */
  ping(): boolean {
    if (this.#awaitingPong) return false;
    this.#awaitingPong = true;
    this.#ws.ping();
    return true;
  }

  bufferedBytes(): number {
    return this.#ws.bufferedAmount;
  }

  close(reason: CloseReason): void {
    if (this.#ws.readyState !== WS_OPEN) return;
    if (reason === 'finished') this.#ws.close(WS_NORMAL, 'job finished');
    else if (reason === 'shutdown') this.#ws.close(WS_GOING_AWAY, 'server shutting down');
    else if (reason === 'dead') this.#ws.terminate();
  }
}
