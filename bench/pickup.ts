/**
 * Pickup measurement shared by benchmarks: jobs posted to a running longhaul over HTTP, each counted as
 * accepted at its 202, and the probe job type (bench/fixtures/probe.ts) recording when its chunk started.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool as HttpPool } from 'undici';
import type { Queryable } from '../src/db/pool.ts';

/** LONGHAUL_JOB_TYPES for a service that runs probe jobs. */
export const PROBE_TYPES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'probe.ts');
export const PROBE_BODY = JSON.stringify({ type: 'probe', input: {} });

/** Epoch ms with sub-ms precision, the clock the probe job records its chunk's start on. */
export const now = (): number => performance.timeOrigin + performance.now();

/** Polls `fn` every 5 ms until it is true; the benchmark fails after `ms`. */
export async function waitUntil(fn: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Posts jobs to a running longhaul over `connections` connections; a job counts as accepted at its 202. */
export function jobPoster(url: string, apiKey: string, connections: number) {
  const http = new HttpPool(url, { connections, pipelining: 1 });
  const post = async (body: string): Promise<{ id: string; sent: number; accepted: number }> => {
    const sent = now();
    const res = await http.request({
      path: '/v1/jobs',
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body,
    });
    const json = (await res.body.json()) as { id: string };
    if (res.statusCode !== 202) throw new Error(`POST answered ${res.statusCode}`);
    return { id: json.id, sent, accepted: now() };
  };
  return { post, close: () => http.close() };
}

/** When probe job `id`'s chunk started, once the job is COMPLETED (within `ms`). */
export async function probeStartedAt(db: Queryable, id: string, ms: number): Promise<number> {
  let at = 0;
  await waitUntil(async () => {
    const { rows } = await db.query<{ at: number | null }>(
      `SELECT (result->>'first_chunk_at')::float8 AS at FROM jobs WHERE id = $1 AND status = 'COMPLETED'`,
      [id],
    );
    at = rows[0]?.at ?? 0;
    return at > 0;
  }, ms);
  return at;
}
