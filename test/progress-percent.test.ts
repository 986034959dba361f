/**
 * One progress percent on every surface: a job reporting an awkward fraction shows the same percent in
 * GET /v1/jobs/{id}, in the list, in its live progress event (SSE) and in its webhook, as
 * `longhaul_progress_percent` (sql/016) defines it: hundredths, rounded down, computed exactly.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startReceiver, waitFor, type Receiver } from './support/receiver.ts';
import { SseReader } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';
import { FIXTURE_TYPES } from './support/worker.ts';

let t: TestService;
let rx: Receiver;
beforeAll(async () => {
  t = await startTestService({
    roles: ['api', 'worker'],
    env: { LONGHAUL_JOB_TYPES: FIXTURE_TYPES, LONGHAUL_CALLBACK_ALLOW: '127.0.0.1' },
  });
  rx = await startReceiver();
});
afterAll(async () => {
  await rx.close();
  await t.stop();
});

interface Progress {
  processed: number;
  total: number | null;
  percent: number | null;
}

it.each([
  // Floats give 56.99 (0.57 * 10000 is 5699.999…).
  [57, 100, 57],
  [1, 3, 33.33],
  [2, 3, 66.66],
  [1, 7, 14.28],
  [999_999, 1_000_000, 99.99],
  [0, 5, 0],
  // Nothing to do is done.
  [0, 0, 100],
  // More than the total never shows more than 100.
  [5, 3, 100],
])('%i of %i is %d on every surface', async (processed, total, percent) => {
  const path = `/percent-${processed}-${total}`;
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'fraction', input: { processed, total }, callback_url: rx.url + path },
  });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  // From the first event on: the progress events as a live stream sends them, whenever the job ran.
  const { reader } = await SseReader.open(`${t.url}/v1/jobs/${id}/events`, {
    authorization: `Bearer ${t.tenant.api_key}`,
    'last-event-id': '0',
  });
  if (reader === undefined) throw new Error('no event stream');
  try {
    await waitFor('the terminal event', () =>
      reader.messages.some((m) => m.type === 'status' && m.status === 'COMPLETED'),
    );
  } finally {
    reader.close();
  }
  const live = reader.messages.filter((m) => m.type === 'progress').at(-1);
  const got = (await (await t.api(`/v1/jobs/${id}`)).json()) as { progress: Progress };
  const list = (await (await t.api('/v1/jobs?type=fraction&limit=100')).json()) as {
    data: Array<{ id: string; progress: Progress }>;
  };
  const hook = await rx.arrival('the webhook', () => rx.to(path)[0]);
  const sent = (JSON.parse(hook.body) as { data: { progress: Progress } }).data.progress;

  const want = { processed, total, percent };
  expect(got.progress).toEqual(want);
  expect(list.data.find((j) => j.id === id)?.progress).toEqual(want);
  expect({ processed: live?.processed, total: live?.total, percent: live?.percent }).toEqual(want);
  expect(sent).toEqual(want);
  // The signed bytes carry the shortest form of the number (57, not 57.000…).
  expect(hook.body).toContain(`"percent": ${JSON.stringify(percent)},`);
});
