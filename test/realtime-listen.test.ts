/**
 * The hub listens to job events only while it follows a job (src/realtime/hub.ts): an API process with
 * no stream open is not woken by the announcements of every job in the cluster. Seen from Postgres (the
 * LISTEN connection's last statement, and Postgres delivering only what is notified after LISTEN) and
 * from the hub's own counts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { transition } from './support/status.ts';
import { SseReader, until, writeProgress } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

async function runningJob(): Promise<string> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } },
  });
  const id = ((await res.json()) as { id: string }).id;
  await transition(t.service.pool, id, 'RUNNING');
  return id;
}

/** The last statement of the process's LISTEN connection, as Postgres shows it. */
async function listenerStatement(): Promise<string> {
  const { rows } = await t.service.pool.query<{ query: string }>(
    `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'longhaul-listen'`,
  );
  expect(rows).toHaveLength(1);
  return rows[0]?.query ?? '';
}

function hub() {
  const stats = t.service.realtime?.stats();
  if (stats === undefined) throw new Error('no realtime hub');
  return stats;
}

it('listens to job events while a stream is open, and only then', async () => {
  const [unwatched, watched] = [await runningJob(), await runningJob()];
  expect(hub().followingEvents).toBe(false);
  expect(await listenerStatement()).not.toContain('longhaul_job_events');
  // Announced while nobody here follows a job: Postgres never delivers it, even once LISTEN is in place.
  await writeProgress(t.service.pool, unwatched, 1, 10);

  const { reader } = await SseReader.open(`${t.url}/v1/jobs/${watched}/events`, {
    authorization: `Bearer ${t.tenant.api_key}`,
  });
  if (reader === undefined) throw new Error('the stream did not open');
  await until('LISTEN on job events', () => hub().followingEvents);
  expect(await listenerStatement()).toBe('LISTEN "longhaul_job_events"');
  // Committed after LISTEN: it arrives by notification (the periodic catch-up is seconds away).
  const seq = await writeProgress(t.service.pool, watched, 3, 10);
  await until('the progress event', () => reader.messages.some((m) => m.seq === seq));
  await until('its notification', () => hub().notifications > 0);
  expect(hub().notifications).toBe(1);

  reader.close();
  await until('UNLISTEN once the last stream ended', () => !hub().followingEvents && hub().jobs === 0);
  await until('the UNLISTEN statement', async () => (await listenerStatement()) === 'UNLISTEN "longhaul_job_events"');
});
