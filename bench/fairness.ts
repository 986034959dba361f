/**
 * Issue 16, fairness: tenant B's pickup (202 accepted → first chunk started) while tenant A's backlog
 * drains (by default 10,000 jobs of one 20 ms chunk: BENCH_FAIRNESS_JOBS, BENCH_FAIRNESS_CHUNK_MS), beside B's pickup on the idle service measured in the same run; and B's pickup at
 * the top priority while A drains, which no tenant share holds back (the floor without preemption). One service with
 * its default settings (worker slots and how tenants share them); B submits one probe job at a time.
 */
import pg from 'pg';
import { createTenant } from '../src/tenants/repository.ts';
import { percentile, type BenchModule } from './harness.ts';
import { jobPoster, PROBE_TYPES, probeStartedAt } from './pickup.ts';
import { startChildService } from './support.ts';

/** A's backlog and the length of its jobs' one chunk (BENCH_FAIRNESS_JOBS, BENCH_FAIRNESS_CHUNK_MS). */
const BACKLOG = Number(process.env.BENCH_FAIRNESS_JOBS ?? 10_000);
const A_CHUNK_MS = Number(process.env.BENCH_FAIRNESS_CHUNK_MS ?? 20);
/** A's jobs: long enough that the backlog is still draining while B's samples are taken. */
const A_JOB = JSON.stringify({ type: 'synthetic', input: { chunks: 1, chunk_ms: A_CHUNK_MS } });
const SAMPLES = 40;
const WARMUP = 5;
const CLIENTS = 16;

/**
 * B's pickups, one probe job at a time: from its 202 to its chunk starting (the probe records it), with
 * the probes' job ids.
 */
async function pickups(db: pg.Pool, post: (body: string) => Promise<{ id: string; accepted: number }>, priority = 0) {
  const out: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < SAMPLES + WARMUP; i++) {
    const { id, accepted } = await post(JSON.stringify({ type: 'probe', input: {}, priority }));
    const at = await probeStartedAt(db, id, 30_000);
    if (i < WARMUP) continue;
    out.push(Math.max(0, at - accepted));
    ids.push(id);
  }
  return Object.assign(out, { ids });
}

/**
 * For each of B's probes, how many of A's jobs held a slot when B's was fetched: started before it (the
 * fetch's statement claims the job) and finished after. All the worker's slots: B's took a burst slot.
 */
async function besideA(db: pg.Pool, tenantA: string, probes: string[]): Promise<number[]> {
  const { rows } = await db.query<{ id: string; n: number }>(
    `SELECT b.id, (SELECT count(*) FROM jobs a
                    WHERE a.tenant_id = $1 AND a.started_at <= b.started_at
                      AND (a.finished_at IS NULL OR a.finished_at > b.started_at))::int AS n
       FROM jobs b WHERE b.id = ANY($2::uuid[])`,
    [tenantA, probes],
  );
  const n = new Map(rows.map((r) => [r.id, r.n]));
  return probes.map((id) => n.get(id) ?? 0);
}

export const fairnessBench: BenchModule = {
  title: "fairness: one tenant's pickup while another's backlog drains",
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    try {
      const a = await createTenant(pool, 'bench-a');
      const b = await createTenant(pool, 'bench-b');
      const svc = await startChildService('start', { DATABASE_URL: db.url, LONGHAUL_JOB_TYPES: PROBE_TYPES });
      const aClient = jobPoster(svc.url, a.api_key, CLIENTS);
      const bClient = jobPoster(svc.url, b.api_key, CLIENTS);
      try {
        const idle = await pickups(pool, bClient.post);
        let next = 0;
        await Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            while (next < BACKLOG) {
              next++;
              await aClient.post(A_JOB);
            }
          }),
        );
        const loaded = await pickups(pool, bClient.post);
        // The same probe at the top priority: the next fetch takes it whatever the tenants' shares say, so
        // this is the floor of a design without preemption (a slot freeing, then one fetch and claim).
        const floor = await pickups(pool, bClient.post, 100);
        const { rows } = await pool.query<{ pending: number }>(
          `SELECT count(*)::int AS pending FROM jobs WHERE tenant_id = $1 AND phase = 'ACTIVE' AND status = 'PENDING'`,
          [a.id],
        );
        const pending = rows[0]?.pending ?? 0;
        ctx.log(`A's jobs still PENDING after B's last sample: ${pending} of ${BACKLOG}`);
        const beside = await besideA(pool, a.id, loaded.ids);
        const counts = new Map<number, number>();
        for (const n of beside) counts.set(n, (counts.get(n) ?? 0) + 1);
        const spread = [...counts].sort(([x], [y]) => y - x).map(([n, k]) => `${n} in ${k}`);
        ctx.log(`A's jobs holding a slot when B's was fetched, by loaded sample: ${spread.join(', ')}`);
        const most = Math.max(...beside);
        const burst = loaded.filter((_, i) => beside[i] === most);
        const rest = loaded.filter((_, i) => beside[i] !== most);
        if (rest.length > 0)
          ctx.log(
            `B's pickup p50 beside ${most} of A's: ${percentile(burst, 50).toFixed(1)} ms; beside fewer: ${percentile(rest, 50).toFixed(1)} ms`,
          );
        const p99 = percentile(loaded, 99);
        const idleP99 = percentile(idle, 99);
        return [
          {
            name: `tenant B pickup p99 while A's ${BACKLOG.toLocaleString('en-US')}-job backlog drains (${A_CHUNK_MS} ms jobs)${pending === 0 ? ' (backlog ran out before the last sample)' : ''}`,
            value: p99,
            unit: 'ms',
            baselineName: 'tenant B pickup p99, idle',
            baseline: idleP99,
            target: 'ratio ≤ 2',
            met: pending > 0 && p99 / idleP99 <= 2,
          },
          {
            name: `tenant B pickup p99 at priority 100 while A drains (a slot freeing + one fetch)`,
            value: percentile(floor, 99),
            unit: 'ms',
            baselineName: 'tenant B pickup p99, idle',
            baseline: idleP99,
          },
          {
            name: `tenant B pickup p50 while A's backlog drains`,
            value: percentile(loaded, 50),
            unit: 'ms',
            baselineName: 'tenant B pickup p50, idle',
            baseline: percentile(idle, 50),
          },
        ];
      } finally {
        await aClient.close();
        await bClient.close();
        await svc.stop();
      }
    } finally {
      await pool.end();
      await db.drop();
    }
  },
};
