/**
 * Lost workers are not job failures, with real worker processes killed with SIGKILL against a real
 * Postgres: a job whose worker is killed more times than its max_attempts still completes on its first
 * attempt, and a job that loses its worker LONGHAUL_MAX_LEASE_LOSSES times is dead-lettered, with every
 * takeover in its error_history as `lease_lost`.
 */
import { expect, it } from 'vitest';
import { jobRow } from './support/jobs.ts';
import type { TestService } from './support/service.ts';
import { useWorkerProcesses, waitFor, type WorkerProcess } from './support/worker.ts';

let t: TestService;
const start = useWorkerProcesses((service) => (t = service));

interface Row {
  status: string;
  processed: number;
  attempts: number;
  max_attempts: number;
  lease_owner: string | null;
  lease_losses: number;
}
const row = (id: string) =>
  jobRow<Row>(t.service.pool, id, 'status, processed, attempts, max_attempts, lease_owner, lease_losses');

interface Entry {
  kind: string;
  name?: string;
  attempt: number;
  lease_losses?: number;
  message: string;
}
async function job(id: string): Promise<{ status: string; attempts: number; error_history: Entry[]; result: unknown }> {
  const res = await t.api(`/v1/jobs/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as { status: string; attempts: number; error_history: Entry[]; result: unknown };
}

/**
 * Kills the worker running job `id` with SIGKILL `kills` times, each time once it has committed a chunk.
 * One more worker than kills runs from the start, so after each kill a survivor's monitor takes the
 * job over once the lease runs out.
 */
async function killOwners(kills: number, env: Record<string, string>): Promise<string> {
  const live: WorkerProcess[] = [];
  for (let i = 0; i <= kills; i++) live.push(await start(env));
  const id = await submit();
  for (let k = 0; k < kills; k++) {
    const owner = await waitFor(
      `worker ${k + 1} running the job`,
      async () => {
        const r = await row(id);
        if (r.status !== 'RUNNING' || r.lease_losses !== k) return undefined;
        const w = live.find((p) => r.lease_owner?.includes(`:${p.pid}:`) === true);
        const { rows } = await t.service.pool.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM chunk_runs WHERE job_id = $1 AND pid = $2 AND ended IS NOT NULL',
          [id, w?.pid ?? -1],
        );
        return w !== undefined && (rows[0]?.n ?? 0) > 0 ? w : undefined;
      },
      30_000,
    );
    await owner.kill('SIGKILL');
    live.splice(live.indexOf(owner), 1);
  }
  return id;
}

const CHUNKS = 200;

async function submit(): Promise<string> {
  const res = await t.api('/v1/jobs', {
    method: 'POST',
    json: { type: 'counted', input: { chunks: CHUNKS, chunk_ms: 50 } },
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

it('completes a job whose worker was killed more times than its max_attempts, on its first attempt', async () => {
  // The type's default max_attempts (3), exceeded by one.
  const kills = 4;
  const id = await killOwners(kills, {});
  expect((await row(id)).max_attempts).toBeLessThan(kills);
  const done = await waitFor(
    'completion',
    async () => {
      const j = await job(id);
      return j.status === 'COMPLETED' || j.status === 'FAILED' ? j : undefined;
    },
    60_000,
  );
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ sum: (CHUNKS * (CHUNKS - 1)) / 2 });
  // No takeover spent an attempt: the job is still on its first.
  expect(done.attempts).toBe(1);
  expect(done.error_history.map((e) => [e.kind, e.name, e.attempt, e.lease_losses])).toEqual(
    Array.from({ length: kills }, (_, i) => ['lease_lost', 'LeaseExpired', 1, i + 1]),
  );
  expect((await row(id)).lease_losses).toBe(kills);
}, 120_000);

it('dead-letters a job that lost its worker LONGHAUL_MAX_LEASE_LOSSES times, with each loss in its history', async () => {
  const env = { LONGHAUL_MAX_LEASE_LOSSES: '2' };
  const id = await killOwners(2, env);
  const failed = await waitFor(
    'the job failed',
    async () => {
      const j = await job(id);
      return j.status === 'FAILED' ? j : undefined;
    },
    30_000,
  );
  expect(failed.attempts).toBe(1);
  expect(failed.error_history.map((e) => [e.kind, e.lease_losses])).toEqual([
    ['lease_lost', 1],
    ['lease_lost', 2],
  ]);
  const list = (await (await t.api('/v1/dead-letters?kind=job')).json()) as {
    data: Array<{ job: { id: string; error_history: Entry[] } }>;
  };
  const dead = list.data.find((d) => d.job.id === id);
  expect(dead?.job.error_history.at(-1)?.kind).toBe('lease_lost');
  // Dead-lettered for good: no worker runs it again.
  const runs = async () =>
    (await t.service.pool.query('SELECT 1 FROM chunk_runs WHERE job_id = $1', [id])).rowCount ?? 0;
  const before = await runs();
  const next = await submit();
  await waitFor('a later job runs', async () => (await row(next)).processed > 0, 30_000);
  expect(await runs()).toBe(before);
}, 120_000);
