/**
 * Recurring schedules (docs/scheduling.md): the API (every bad value a 422 naming its field that writes
 * nothing), occurrences across daylight-saving changes on a fixed clock, and the firing service: two
 * instances on their own connections fire each occurrence once, a firing repeated after a restart
 * creates nothing more, missed occurrences fire the latest once, `overlap: "skip"`, pause and resume.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../src/db/pool.ts';
import { JobSubmitter } from '../src/jobs/submit.ts';
import { createLogger } from '../src/observability/logger.ts';
import { cronProblem, latestOccurrence, nextOccurrence } from '../src/schedules/cron.ts';
import { ScheduleFiring } from '../src/schedules/firing.ts';
import { startTestService, type TestService } from './support/service.ts';
import { dbSnapshot } from './support/snapshot.ts';

let t: TestService;
let otherPool: Pool;
let firings: ScheduleFiring[];
beforeAll(async () => {
  t = await startTestService();
  otherPool = createPool(t.db.url, 4);
  const log = createLogger('silent');
  // Two firing services, each on its own connections, as two worker processes would run them.
  firings = [t.service.pool, otherPool].map(
    (pool) =>
      new ScheduleFiring({
        pool,
        submitter: new JobSubmitter(pool, t.service.boss),
        registry: t.service.registry,
        log,
        intervalMs: 60_000,
      }),
  );
});
afterAll(async () => {
  await otherPool.end();
  await t.stop();
});

const job = { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } };
let n = 0;
const body = (extra: Record<string, unknown> = {}) => ({ name: `s-${++n}`, cron: '0 2 * * *', job, ...extra });

interface Schedule {
  id: string;
  paused: boolean;
  next_fire_at: string | null;
  last_fire_at: string | null;
  last_outcome: string | null;
  last_job_id: string | null;
}

async function create(extra: Record<string, unknown> = {}): Promise<Schedule> {
  const res = await t.api('/v1/schedules', { method: 'POST', json: body(extra) });
  expect(res.status).toBe(201);
  return (await res.json()) as Schedule;
}

async function jobsOf(scheduleId: string): Promise<Array<{ id: string; key: string; status: string }>> {
  const { rows } = await t.service.pool.query<{ id: string; key: string; status: string }>(
    'SELECT id, idempotency_key AS key, status FROM jobs WHERE schedule_id = $1 ORDER BY created_at',
    [scheduleId],
  );
  return rows;
}

/** Moves a schedule's next occurrence into the past, as if the firing services had been down since. */
async function owe(id: string, secondsAgo: number): Promise<void> {
  await t.service.pool.query(`UPDATE schedules SET next_fire_at = now() - make_interval(secs => $2) WHERE id = $1`, [
    id,
    secondsAgo,
  ]);
}

const fireBoth = () => Promise.all(firings.map((f) => f.fireDue()));

describe('occurrences across daylight-saving changes (fixed clock)', () => {
  const ny = 'America/New_York';
  const after = (iso: string, cron: string, tz = ny, count = 2) => {
    const out: string[] = [];
    let at = new Date(iso);
    for (let i = 0; i < count; i++) {
      at = nextOccurrence(cron, tz, 'seed', at);
      out.push(at.toISOString());
    }
    return out;
  };

  it('keeps 09:00 local across spring-forward: 14:00 UTC before it, 13:00 UTC after', () => {
    expect(after('2026-03-07T12:00:00Z', '0 9 * * *')).toEqual([
      '2026-03-07T14:00:00.000Z',
      '2026-03-08T13:00:00.000Z',
    ]);
  });

  it('fires a time that spring-forward skips (02:30) at 03:30, once', () => {
    expect(after('2026-03-07T12:00:00Z', '30 2 * * *')).toEqual([
      '2026-03-08T07:30:00.000Z',
      '2026-03-09T06:30:00.000Z',
    ]);
  });

  it('fires a time that fall-back repeats (01:30) once, at its first instance', () => {
    expect(after('2026-10-31T12:00:00Z', '30 1 * * *')).toEqual([
      '2026-11-01T05:30:00.000Z',
      '2026-11-02T06:30:00.000Z',
    ]);
  });

  it('steps through both hours of a fall-back night for an every-30-minutes schedule', () => {
    expect(after('2026-11-01T04:50:00Z', '*/30 * * * *', ny, 4)).toEqual([
      '2026-11-01T05:00:00.000Z',
      '2026-11-01T05:30:00.000Z',
      '2026-11-01T06:00:00.000Z',
      '2026-11-01T06:30:00.000Z',
    ]);
  });

  it('finds the latest occurrence at or before an instant', () => {
    expect(latestOccurrence('0 * * * *', 'UTC', 'seed', new Date('2026-01-01T05:00:00Z'))?.toISOString()).toBe(
      '2026-01-01T05:00:00.000Z',
    );
    expect(latestOccurrence('0 * * * *', 'UTC', 'seed', new Date('2026-01-01T05:59:59Z'))?.toISOString()).toBe(
      '2026-01-01T05:00:00.000Z',
    );
  });

  it.each([
    ['61 * * * *', 'UTC', 'cron'],
    ['* * * *', 'UTC', 'cron'],
    ['not cron', 'UTC', 'cron'],
    ['0 0 30 2 *', 'UTC', 'cron'],
    ['0 9 * * *', 'Mars/Olympus', 'timezone'],
    ['0 9 * * *', '', 'timezone'],
  ])('refuses %j in %j, naming %s', (cron, tz, field) => {
    expect(cronProblem(cron, tz)?.field).toBe(field);
  });
});

describe('the schedules API', () => {
  it('creates, reads, lists, changes, pauses, resumes and deletes a schedule', async () => {
    const s = await create({ timezone: 'Europe/Berlin', overlap: 'allow' });
    expect(s).toMatchObject({ paused: false, last_fire_at: null, last_outcome: null });
    expect(Date.parse(s.next_fire_at ?? '')).toBeGreaterThan(Date.now());
    expect(((await (await t.api(`/v1/schedules/${s.id}`)).json()) as Schedule).id).toBe(s.id);
    const list = (await (await t.api('/v1/schedules?limit=200')).json()) as { data: Schedule[] };
    expect(list.data.map((x) => x.id)).toContain(s.id);

    const changed = await t.api(`/v1/schedules/${s.id}`, { method: 'PATCH', json: { cron: '*/5 * * * *' } });
    expect(changed.status).toBe(200);
    const next = Date.parse(((await changed.json()) as Schedule).next_fire_at ?? '');
    expect(next - Date.now()).toBeLessThanOrEqual(5 * 60_000);

    const paused = (await (await t.api(`/v1/schedules/${s.id}/pause`, { method: 'POST' })).json()) as Schedule;
    expect(paused).toMatchObject({ paused: true, next_fire_at: null });
    const resumed = (await (await t.api(`/v1/schedules/${s.id}/resume`, { method: 'POST' })).json()) as Schedule;
    expect(resumed.paused).toBe(false);
    expect(Date.parse(resumed.next_fire_at ?? '')).toBeGreaterThan(Date.now());

    const other = await t.newTenant();
    expect((await t.api(`/v1/schedules/${s.id}`, { key: other.api_key })).status).toBe(404);
    expect((await t.api(`/v1/schedules/${s.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await t.api(`/v1/schedules/${s.id}`)).status).toBe(404);
  });

  it('answers 409 for a second schedule of the same name', async () => {
    const s = body();
    expect((await t.api('/v1/schedules', { method: 'POST', json: s })).status).toBe(201);
    expect((await t.api('/v1/schedules', { method: 'POST', json: s })).status).toBe(409);
  });

  it.each([
    ['a cron that does not parse', { cron: '0 25 * * *' }, 'cron'],
    ['a cron with four fields', { cron: '* * * *' }, 'cron'],
    ['an unknown time zone', { timezone: 'Europe/Atlantis' }, 'timezone'],
    ['an unknown job type', { job: { type: 'nope', input: {} } }, 'job.type'],
    [
      'a job input its type refuses',
      { job: { type: 'synthetic', input: { chunks: -1, chunk_ms: 0 } } },
      'job.input.chunks',
    ],
    ['an overlap policy that does not exist', { overlap: 'queue' }, 'overlap'],
  ])('refuses %s with 422 naming the field, writing nothing', async (_what, extra, field) => {
    const before = await dbSnapshot(t.service.pool);
    const res = await t.api('/v1/schedules', { method: 'POST', json: body(extra) });
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { errors: Array<{ field: string }> };
    expect(problem.errors.map((e) => e.field)).toContain(field);
    expect(await dbSnapshot(t.service.pool)).toEqual(before);
  });

  it('refuses a bad change with 422 naming the field, changing nothing', async () => {
    const s = await create();
    const before = await dbSnapshot(t.service.pool);
    for (const [patch, field] of [
      [{ timezone: 'Nowhere/Else' }, 'timezone'],
      [{ cron: '0 0 31 2 *' }, 'cron'],
      [{}, '(body)'],
    ] as const) {
      const res = await t.api(`/v1/schedules/${s.id}`, { method: 'PATCH', json: patch });
      expect(res.status).toBe(422);
      expect(((await res.json()) as { errors: Array<{ field: string }> }).errors.map((e) => e.field)).toContain(field);
    }
    expect(await dbSnapshot(t.service.pool)).toEqual(before);
  });
});

describe('firing', () => {
  it('fires each occurrence once with two firing services racing', async () => {
    const s = await create({ cron: '* * * * * *', overlap: 'allow' });
    // Both services pass over the schedule until it has fired three occurrences.
    await owe(s.id, 0);
    while ((await jobsOf(s.id)).length < 3) await fireBoth();
    const jobs = await jobsOf(s.id);
    const occurrences = jobs.map((j) => new RegExp(`^schedule:${s.id}:(\\d{4}-[\\d:.T-]+Z)`).exec(j.key)?.[1]);
    expect(occurrences.every((o) => o !== undefined)).toBe(true);
    expect(new Set(occurrences).size).toBe(jobs.length);
    const { rows } = await t.service.pool.query('SELECT count(*)::int AS n FROM pgboss.job WHERE id = ANY($1)', [
      jobs.map((j) => j.id),
    ]);
    expect(rows[0]).toEqual({ n: jobs.length });
  });

  it('after downtime, fires the latest missed occurrence once and owes the next one from now', async () => {
    const s = await create({ cron: '0 3 * * *', overlap: 'allow' });
    await owe(s.id, 3 * 86_400);
    await fireBoth();
    await fireBoth();
    const jobs = await jobsOf(s.id);
    expect(jobs).toHaveLength(1);
    const fired = (await (await t.api(`/v1/schedules/${s.id}`)).json()) as Schedule;
    const last = new Date(fired.last_fire_at ?? '');
    expect(Date.now() - last.getTime()).toBeLessThan(86_400_000);
    expect([last.getUTCHours(), last.getUTCMinutes()]).toEqual([3, 0]);
    expect(jobs[0]?.key).toBe(`schedule:${s.id}:${last.toISOString()}`);
    expect(Date.parse(fired.next_fire_at ?? '')).toBe(last.getTime() + 86_400_000);
    expect(fired).toMatchObject({ last_outcome: 'created', last_job_id: jobs[0]?.id });

    // A process that fired the occurrence but restarted before recording it would owe it again: set back
    // to it, the schedule fires it again and the occurrence's key answers with the same job.
    await t.service.pool.query('UPDATE schedules SET next_fire_at = last_fire_at WHERE id = $1', [s.id]);
    await fireBoth();
    expect(await jobsOf(s.id)).toEqual(jobs);
    const again = (await (await t.api(`/v1/schedules/${s.id}`)).json()) as Schedule;
    expect(again).toMatchObject({ last_job_id: jobs[0]?.id, next_fire_at: fired.next_fire_at });
  });

  it('with overlap "skip", creates nothing while the last job is unfinished', async () => {
    const s = await create({ cron: '* * * * * *', overlap: 'skip' });
    await owe(s.id, 0);
    await fireBoth();
    expect(await jobsOf(s.id)).toHaveLength(1);
    await owe(s.id, 0);
    await fireBoth();
    const skipped = (await (await t.api(`/v1/schedules/${s.id}`)).json()) as Schedule;
    expect(skipped.last_outcome).toBe('skipped');
    expect(await jobsOf(s.id)).toHaveLength(1);

    // Once the job is finished, the next occurrence (the next second: this one's job exists) creates one.
    const [first] = await jobsOf(s.id);
    expect((await t.api(`/v1/jobs/${first?.id}/cancel`, { method: 'POST' })).status).toBe(200);
    while ((await jobsOf(s.id)).length < 2) {
      await owe(s.id, 0);
      await fireBoth();
    }
    const fired = (await (await t.api(`/v1/schedules/${s.id}`)).json()) as Schedule;
    expect(fired.last_outcome).toBe('created');
  });

  it('fires nothing while paused, and only occurrences after the resume', async () => {
    const s = await create({ cron: '* * * * * *', overlap: 'allow' });
    await t.api(`/v1/schedules/${s.id}/pause`, { method: 'POST' });
    await fireBoth();
    expect(await jobsOf(s.id)).toHaveLength(0);
    const resumed = (await (await t.api(`/v1/schedules/${s.id}/resume`, { method: 'POST' })).json()) as Schedule;
    const from = Date.parse(resumed.next_fire_at ?? '');
    while ((await jobsOf(s.id)).length === 0) await fireBoth();
    const fired = (await (await t.api(`/v1/schedules/${s.id}`)).json()) as Schedule;
    expect(Date.parse(fired.last_fire_at ?? '')).toBeGreaterThanOrEqual(from);
  });
});
