/**
 * Fairness between tenants (docs/scheduling.md#fairness), with the service's defaults and a real worker:
 * tenant A submits a backlog, then tenant B one job; B's job starts while A's backlog is still draining
 * (jobs of A start after it) and soon after it was submitted, not behind A's backlog.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';
import { waitFor } from './support/worker.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({ roles: ['api', 'worker'] });
});
afterAll(async () => t.stop());

/**
 * A's backlog, submitted as one batch so that it is all waiting at once however loaded the machine is:
 * at the default 8 slots, several seconds of work, well past B's pickup bound.
 */
const BACKLOG = 300;
const aJob = { type: 'synthetic', input: { chunks: 1, chunk_ms: 100 } };
/** How long B's job may wait for a slot: one of A's jobs ending and a fetch, with room for a loaded machine. */
const PICKUP_BOUND_MS = 1500;

describe("a tenant's backlog", () => {
  it("does not hold back another tenant's job", async () => {
    const a = await t.newTenant();
    const b = await t.newTenant();
    const batch = await t.api('/v1/jobs/batch', {
      method: 'POST',
      json: { jobs: Array.from({ length: BACKLOG }, () => aJob) },
      key: a.api_key,
    });
    expect(batch.status).toBe(202);
    // A's backlog is being worked on.
    await waitFor('A running', async () => {
      const { rows } = await t.service.pool.query(`SELECT 1 FROM jobs WHERE tenant_id = $1 AND status = 'RUNNING'`, [
        a.id,
      ]);
      return rows.length > 0;
    });
    const res = await t.api('/v1/jobs', {
      method: 'POST',
      json: { type: 'synthetic', input: { chunks: 1, chunk_ms: 0 } },
      key: b.api_key,
    });
    const { id } = (await res.json()) as { id: string };
    const started = await waitFor('B started', async () => {
      const { rows } = await t.service.pool.query<{ started_at: Date | null; created_at: Date }>(
        'SELECT started_at, created_at FROM jobs WHERE id = $1',
        [id],
      );
      const row = rows[0];
      return row?.started_at === null || row === undefined ? undefined : row;
    });
    // A's jobs that had not started when B's did (started since, or not yet).
    const { rows } = await t.service.pool.query<{ waiting: number }>(
      `SELECT count(*) FILTER (WHERE started_at IS NULL OR started_at > $2)::int AS waiting FROM jobs WHERE tenant_id = $1`,
      [a.id, started.started_at],
    );
    const pickupMs = (started.started_at?.getTime() ?? 0) - started.created_at.getTime();
    expect(rows[0]?.waiting, "A's jobs waiting when B's started (A's backlog was still draining)").toBeGreaterThan(0);
    expect(pickupMs).toBeLessThan(PICKUP_BOUND_MS);
    // Let A's backlog finish before the service stops.
    await waitFor(
      'A drained',
      async () => {
        const { rows: left } = await t.service.pool.query(
          `SELECT 1 FROM jobs WHERE tenant_id = $1 AND status IN ('PENDING', 'RUNNING') LIMIT 1`,
          [a.id],
        );
        return left.length === 0;
      },
      60_000,
    );
  });
});
