/**
 * The worker runtime with real processes against a real Postgres: kill -9 mid-job and resume from
 * the checkpoint (at most one chunk redone), SIGSTOP past the lease then SIGCONT (the stale worker's
 * write is refused and it abandons the job; two workers never run a job at once), cancellation while
 * PENDING, a graceful SIGTERM that hands the job over at a chunk boundary, and a chunk running while the
 * previous checkpoint commits (after the chunk's durable writes, and the whole step failing if they fail).
 */
import { describe, expect, it } from 'vitest';
import { jobRow } from './support/jobs.ts';
import type { TestService } from './support/service.ts';
import { gateOpen, openGate, useWorkerProcesses, waitFor } from './support/worker.ts';

let t: TestService;
const start = useWorkerProcesses((service) => (t = service));

async function submit(type: string, input: unknown): Promise<string> {
  const res = await t.api('/v1/jobs', { method: 'POST', json: { type, input } });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

interface Row {
  status: string;
  processed: number;
  result: unknown;
  lease_owner: string | null;
  attempts: number;
}
const row = (id: string) => jobRow<Row>(t.service.pool, id, 'status, processed, result, lease_owner, attempts');

/** The job's row once it is COMPLETED (within 30 s). */
async function completed(id: string): Promise<Row> {
  return waitFor(
    'completion',
    async () => {
      const r = await row(id);
      return r.status === 'COMPLETED' ? r : undefined;
    },
    30_000,
  );
}

async function chunkRuns(
  id: string,
): Promise<Array<{ chunk: number; pid: number; started: Date; ended: Date | null }>> {
  const { rows } = await t.service.pool.query<{ chunk: number; pid: number; started: Date; ended: Date | null }>(
    'SELECT chunk, pid, started, ended FROM chunk_runs WHERE job_id = $1 ORDER BY started',
    [id],
  );
  return rows;
}

const sum = (n: number) => (n * (n - 1)) / 2;

describe('worker processes', () => {
  it('resumes after kill -9 from the checkpoint with the same result, redoing at most one chunk', async () => {
    const chunks = 14;
    const a = await start();
    const id = await submit('counted', { chunks, chunk_ms: 120 });
    await waitFor('progress on the first worker', async () => (await row(id)).processed >= 4);
    await a.kill('SIGKILL');
    const before = (await row(id)).processed;
    await start();
    const done = await completed(id);
    // Same result as an uninterrupted run (the sum of every chunk number, each counted once).
    expect(done.result).toEqual({ sum: sum(chunks) });
    expect(done.processed).toBe(chunks);
    // A lost worker spends no attempt: the job carries on in its first.
    expect(done.attempts).toBe(1);
    const runs = await chunkRuns(id);
    const redone = runs.length - chunks;
    expect(redone).toBeLessThanOrEqual(1);
    expect(runs.filter((r) => r.chunk < before).every((r) => r.pid === a.pid)).toBe(true);
  });

  it('refuses the checkpoint of a worker stopped past its lease, which abandons the job; never two at once', async () => {
    const chunks = 16;
    const a = await start();
    const b = await start();
    const id = await submit('counted', { chunks, chunk_ms: 150 });
    const owner = await waitFor('a running owner', async () => {
      const r = await row(id);
      return r.processed >= 2 ? r.lease_owner : undefined;
    });
    const [stale, live] = owner?.includes(`:${a.pid}:`) === true ? [a, b] : [b, a];
    stale.child.kill('SIGSTOP');
    // The lease (2 s) runs out, the other worker's monitor takes the job over, and it makes progress.
    await waitFor('takeover', async () => (await row(id)).lease_owner?.includes(`:${live.pid}:`) === true, 15_000);
    const atTakeover = (await row(id)).processed;
    await waitFor('progress by the new owner', async () => (await row(id)).processed >= atTakeover + 2, 15_000);
    stale.child.kill('SIGCONT');
    await waitFor(
      'the stale worker abandons the job',
      async () => stale.output().includes('lease lost; abandoning job'),
      10_000,
    );
    const done = await completed(id);
    expect(done.result).toEqual({ sum: sum(chunks) });
    expect(done.processed).toBe(chunks);
    // Never two workers on the job at once: committed chunks of different workers do not overlap in time.
    const committed = (await chunkRuns(id)).filter((r) => r.ended !== null);
    expect(committed).toHaveLength(chunks);
    for (let i = 1; i < committed.length; i++) {
      const prev = committed[i - 1];
      const cur = committed[i];
      if (prev?.ended && cur) expect(cur.started.getTime()).toBeGreaterThanOrEqual(prev.ended.getTime());
    }
  });

  it('cancels a PENDING job at once; a worker started later does not run it', async () => {
    const id = await submit('counted', { chunks: 2, chunk_ms: 1 });
    const res = await t.api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    await start();
    const other = await submit('counted', { chunks: 1, chunk_ms: 1 });
    await waitFor('the next job completes', async () => (await row(other)).status === 'COMPLETED');
    expect((await row(id)).status).toBe('CANCELLED');
    expect(await chunkRuns(id)).toHaveLength(0);
    // The completed job's execution (its last step wrote through ctx.db) was deleted in that step's
    // transaction; the cancelled job's stays in pg-boss, saying why it ended.
    const { rows } = await t.service.pool.query<{ job: string }>(
      `SELECT data->>'jobId' AS job FROM pgboss.job WHERE data->>'jobId' = ANY($1::text[])`,
      [[id, other]],
    );
    expect(rows).toEqual([{ job: id }]);
  });

  it('on SIGTERM stops at the next chunk boundary with the checkpoint committed, then exits', async () => {
    const a = await start();
    const id = await submit('counted', { chunks: 30, chunk_ms: 200 });
    await waitFor('progress', async () => (await row(id)).processed >= 2);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    const r = await row(id);
    expect(r.status).toBe('PENDING');
    // The chunk in flight at SIGTERM finished and committed: nothing was left half done.
    const runs = await chunkRuns(id);
    expect(runs.every((x) => x.ended !== null)).toBe(true);
    expect(runs).toHaveLength(r.processed);
    expect(a.output()).toContain('handed over');
  });

  it("runs the next chunk while the last checkpoint commits, and commits it only once the chunk's durable writes are", async () => {
    await start();
    const id = await submit('overlapped', { fail_sync: false });
    const open = (name: string) => openGate(t.service.pool, id, name);
    const cursor = async () =>
      (await t.service.pool.query<{ c: unknown }>('SELECT checkpoint_cursor AS c FROM jobs WHERE id = $1', [id]))
        .rows[0]?.c;
    // Chunk 1 starts although chunk 0's checkpoint cannot commit yet (its durable promise waits on 'durable');
    // start()'s checkpoint rides with chunk 0's, so none is committed.
    await waitFor('chunk 1 started', () => gateOpen(t.service.pool, id, 'chunk1-started-1'));
    expect(await cursor()).toBeNull();
    // Once its writes are durable, chunk 0's checkpoint commits while chunk 1 still runs.
    await open('durable');
    await waitFor('chunk 0 checkpointed', async () => (await cursor()) === 1);
    expect((await row(id)).status).toBe('RUNNING');
    await open('finish');
    expect((await completed(id)).processed).toBe(2);
    // Two checkpoints, one seq each (chunk 0's with start's at 2, the last at 3), then COMPLETED at 4.
    const { rows } = await t.service.pool.query('SELECT event_seq, progress_seq FROM jobs WHERE id = $1', [id]);
    expect(rows).toEqual([{ event_seq: 4, progress_seq: 3 }]);
  });

  it("fails the step when a chunk's durable write fails: the chunk running meanwhile stops, the retry redoes only unsaved chunks", async () => {
    await start();
    const id = await submit('overlapped', { fail_sync: true });
    const done = await completed(id);
    expect(done.attempts).toBe(2);
    expect(done.processed).toBe(3);
    const body = (await (await t.api(`/v1/jobs/${id}`)).json()) as { error_history: Array<{ message: string }> };
    expect(body.error_history.map((e) => e.message)).toEqual(['sync failed']);
    const stopped = await t.service.pool.query(`SELECT 1 FROM gates WHERE job_id = $1 AND name = 'chunk2-stopped'`, [
      id,
    ]);
    expect(stopped.rowCount).toBe(1);
    const { rows } = await t.service.pool.query<{ attempt: number; chunk: number }>(
      'SELECT attempt, chunk FROM overlapped_runs WHERE job_id = $1 ORDER BY attempt, chunk',
      [id],
    );
    // Chunk 0's checkpoint committed; chunk 1's never did (its write failed), so the retry starts at chunk 1.
    expect(rows).toEqual([
      { attempt: 1, chunk: 0 },
      { attempt: 1, chunk: 1 },
      { attempt: 1, chunk: 2 },
      { attempt: 2, chunk: 1 },
      { attempt: 2, chunk: 2 },
    ]);
  });
});
