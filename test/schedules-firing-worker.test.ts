/**
 * A schedule end to end through a running service (API, worker with its firing service, webhook
 * dispatcher): an occurrence a few seconds ahead creates one job, which runs to COMPLETED, links back
 * to its schedule, and whose signed webhook reaches a real receiver (verified with standardwebhooks).
 */
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { startTestService, type TestService } from './support/service.ts';
import { waitFor } from './support/worker.ts';

let t: TestService;
let rx: Receiver;
beforeAll(async () => {
  [t, rx] = await Promise.all([
    startTestService({ roles: ['api', 'worker'], env: { LONGHAUL_CALLBACK_ALLOW: '127.0.0.1' } }),
    startReceiver(),
  ]);
});
afterAll(async () => {
  await rx?.close();
  await t?.stop();
});

interface Schedule {
  id: string;
  next_fire_at: string | null;
  last_fire_at: string | null;
  last_job_id: string | null;
  last_outcome: string | null;
}

interface Job {
  id: string;
  status: string;
  schedule_id: string | null;
  started_at: string | null;
}

describe('a schedule fired by a running worker', () => {
  it('creates one job at the occurrence, which completes, links back and sends its signed webhook', async () => {
    // One occurrence a day, at a second a few seconds from now (six fields: seconds first).
    const at = new Date(Math.ceil((Date.now() + 5000) / 1000) * 1000);
    const cron = `${at.getUTCSeconds()} ${at.getUTCMinutes()} ${at.getUTCHours()} * * *`;
    const res = await t.api('/v1/schedules', {
      method: 'POST',
      json: {
        name: 'soon',
        cron,
        timezone: 'UTC',
        overlap: 'skip',
        job: {
          type: 'synthetic',
          input: { chunks: 3, chunk_ms: 20 },
          metadata: { origin: 'schedule' },
          callback_url: `${rx.url}/hooks`,
        },
      },
    });
    expect(res.status).toBe(201);
    const created = (await res.json()) as Schedule;
    expect(created.next_fire_at).toBe(at.toISOString());

    const fired = await waitFor('the occurrence fired', async () => {
      const s = (await (await t.api(`/v1/schedules/${created.id}`)).json()) as Schedule;
      return s.last_job_id === null ? undefined : s;
    });
    expect(fired).toMatchObject({ last_fire_at: at.toISOString(), last_outcome: 'created' });
    // The next occurrence is the same second tomorrow.
    expect(fired.next_fire_at).toBe(new Date(at.getTime() + 86_400_000).toISOString());

    const job = await waitFor('the job completed', async () => {
      const j = (await (await t.api(`/v1/jobs/${fired.last_job_id}`)).json()) as Job;
      return j.status === 'COMPLETED' ? j : undefined;
    });
    expect(job.schedule_id).toBe(created.id);
    expect(Date.parse(job.started_at ?? '')).toBeGreaterThanOrEqual(at.getTime());
    const listed = (await (await t.api(`/v1/jobs?schedule_id=${created.id}`)).json()) as { data: Job[] };
    expect(listed.data.map((j) => j.id)).toEqual([job.id]);

    const [hook] = await waitFor('the webhook arrived', async () => {
      const got = rx.to('/hooks');
      return got.length > 0 ? got : undefined;
    });
    if (hook === undefined) throw new Error('no webhook');
    const payload = new Webhook(t.tenant.webhook_secret).verify(hook.body, {
      'webhook-id': String(hook.headers['webhook-id']),
      'webhook-timestamp': String(hook.headers['webhook-timestamp']),
      'webhook-signature': String(hook.headers['webhook-signature']),
    }) as { type: string; data: Job & { metadata: unknown } };
    expect(payload.type).toBe('job.completed');
    expect(payload.data).toMatchObject({
      id: job.id,
      status: 'COMPLETED',
      schedule_id: created.id,
      metadata: { origin: 'schedule' },
    });
    // Exactly one job for the occurrence, however many firing passes ran since.
    const { rows } = await t.service.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM jobs WHERE schedule_id = $1',
      [created.id],
    );
    expect(rows[0]?.n).toBe(1);
  });
});
