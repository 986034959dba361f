/**
 * Announcing job events only to whom follows them. The hub listens to job events only while it follows
 * a job (src/realtime/hub.ts): an API process with no stream open is not woken by the announcements of
 * every job in the cluster; and while it follows one it says so to the workers, which announce only
 * then (src/jobs/events-publisher.ts). Seen from Postgres (the LISTEN connection's last statement, what
 * is said on the followers' channel, and Postgres delivering only what is notified after LISTEN) and
 * from the hub's own counts.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FOLLOWERS_SQL } from '../src/jobs/events-publisher.ts';
import { STREAM_FOLLOWERS_CHANNEL } from '../src/jobs/repository.ts';
import { runningJob, SseReader, until, writeProgress } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';

/** An API process alone, and one that runs jobs too. */
let api: TestService;
let both: TestService;
beforeAll(async () => {
  [api, both] = await Promise.all([startTestService(), startTestService({ roles: ['api', 'worker'] })]);
});
afterAll(async () => Promise.all([api.stop(), both.stop()]));

/** The last statement of the process's LISTEN connection, as Postgres shows it. */
async function listenerStatement(t: TestService): Promise<string> {
  const { rows } = await t.service.pool.query<{ query: string }>(
    `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'longhaul-listen'`,
  );
  expect(rows).toHaveLength(1);
  return rows[0]?.query ?? '';
}

function hub(t: TestService) {
  const stats = t.service.realtime?.stats();
  if (stats === undefined) throw new Error('no realtime hub');
  return stats;
}

async function stream(t: TestService, jobId: string): Promise<SseReader> {
  const { reader } = await SseReader.open(`${t.url}/v1/jobs/${jobId}/events`, {
    authorization: `Bearer ${t.tenant.api_key}`,
  });
  if (reader === undefined) throw new Error('the stream did not open');
  return reader;
}

it('listens to job events while a stream is open, and only then; says so to the workers meanwhile', async () => {
  const said: string[] = [];
  const ear = new pg.Client({ connectionString: api.db.url });
  await ear.connect();
  ear.on('notification', (n) => said.push(n.payload ?? ''));
  await ear.query(`LISTEN ${STREAM_FOLLOWERS_CHANNEL}`);
  try {
    const [unwatched, watched] = [await runningJob(api), await runningJob(api)];
    expect(hub(api).followingEvents).toBe(false);
    expect(await listenerStatement(api)).not.toContain('longhaul_job_events');
    // Announced while nobody here follows a job: Postgres never delivers it, even once LISTEN is in place.
    await writeProgress(api.service.pool, unwatched, 1, 10);

    const reader = await stream(api, watched);
    await until('LISTEN on job events', () => hub(api).followingEvents);
    expect(await listenerStatement(api)).toMatch(/^LISTEN "longhaul_job_events"/);
    await until('the hub to say it follows', () => said.includes('follow'));
    // Committed after LISTEN: it arrives by notification (the periodic catch-up is seconds away).
    const seq = await writeProgress(api.service.pool, watched, 3, 10);
    await until('the progress event', () => reader.messages.some((m) => m.seq === seq));
    await until('its notification', () => hub(api).notifications > 0);
    expect(hub(api).notifications).toBe(1);
    // A worker that has just begun listening asks, and is answered.
    const before = said.length;
    await ear.query(FOLLOWERS_SQL, ['ask']);
    await until('the answer', () => said.slice(before).includes('follow'));

    reader.close();
    await until('UNLISTEN once the last stream ended', () => !hub(api).followingEvents && hub(api).jobs === 0);
    await until('the UNLISTEN statement', async () =>
      /^UNLISTEN "longhaul_job_events"/.test(await listenerStatement(api)),
    );
  } finally {
    await ear.end();
  }
});

it('a worker announces the events of the jobs it runs while a hub follows one', async () => {
  const res = await both.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'synthetic', input: { chunks: 20, chunk_ms: 20 } },
  });
  const id = ((await res.json()) as { id: string }).id;
  const reader = await stream(both, id);
  await until('the job to complete', () => reader.messages.some((m) => m.status === 'COMPLETED'), 30_000);
  // Its events came by notification, not only from the hub's periodic re-reads.
  expect(hub(both).notifications).toBeGreaterThan(0);
  reader.close();
});
