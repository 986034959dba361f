/** A real webhook receiver on 127.0.0.1 (node:http) that records every request and answers as told. */
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** performance.timeOrigin-based ms when the request's headers arrived. */
  at: number;
}

/** What to do with the n-th request (from 1) to a path; return nothing for a plain 200. */
export type Behaviour = (n: number, req: Received, res: ServerResponse) => void | Promise<void>;

export interface Receiver {
  url: string;
  received: Received[];
  /** Requests to one path, in arrival order. */
  to(path: string): Received[];
  on(path: string, behaviour: Behaviour): void;
  /**
   * Resolves with `check`'s value once it is neither undefined nor false, checked now and again as each
   * request arrives (no polling); fails after `ms`.
   */
  arrival<T>(what: string, check: () => T | undefined | false, ms?: number): Promise<T>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const behaviours = new Map<string, Behaviour>();
  const counts = new Map<string, number>();
  const arrivals = new EventEmitter();
  const server = createServer((req, res) => {
    const at = performance.timeOrigin + performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const r: Received = { path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at };
      received.push(r);
      arrivals.emit('request');
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      const b = behaviours.get(path);
      Promise.resolve(b?.(n, r, res))
        .then(() => {
          if (!res.headersSent && !res.writableEnded && !res.destroyed) res.writeHead(200).end('ok');
        })
        .catch(() => res.destroy());
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    to: (path) => received.filter((r) => r.path === path),
    on: (path, behaviour) => void behaviours.set(path, behaviour),
    arrival: (what, check, ms = 15_000) =>
      new Promise((resolve, reject) => {
        const settle = () => {
          const v = check();
          if (v === undefined || v === false) return;
          done();
          resolve(v);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${what}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          arrivals.off('request', settle);
        };
        arrivals.on('request', settle);
        settle();
      }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `ms`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
