/**
 * Gauges of the queue, read from the jobs table at scrape time (so every process serving /metrics shows
 * the whole cluster's figures, and a dashboard takes max() over instances). Each read is bounded by an
 * index or is a planner estimate: see queueFigures.
 */
import type { Queryable } from '../db/pool.ts';
import { readGauge, sharedRead, type Registry } from '../observability/metrics.ts';
import { JOB_STATUSES } from './state.ts';
import { queueFigures } from './overview.ts';

export function registerJobGauges(registry: Registry, db: Queryable, types: readonly string[]): void {
  const figures = sharedRead(() => queueFigures(db, types));
  readGauge(registry, {
    name: 'longhaul_jobs',
    help: 'Jobs by status and type: PENDING and RUNNING exact up to 10000 per status, else (and for finished statuses always) the planner estimate',
    labelNames: ['status', 'type'] as const,
    read: figures,
    show: (g, f) => {
      for (const r of f.byStatusType) g.set({ status: r.status, type: r.type }, r.n);
    },
  });
  readGauge(registry, {
    name: 'longhaul_jobs_estimated',
    help: 'Per status, 1 when longhaul_jobs shows planner estimates rather than exact counts',
    labelNames: ['status'] as const,
    read: figures,
    show: (g, f) => {
      for (const status of JOB_STATUSES) g.set({ status }, f.estimated[status] ? 1 : 0);
    },
  });
  readGauge(registry, {
    name: 'longhaul_job_oldest_pending_age_seconds',
    help: 'How long the longest-waiting PENDING job has waited for a worker (0: none waits)',
    read: figures,
    show: (g, f) => g.set(f.oldestPendingSeconds),
  });
  readGauge(registry, {
    name: 'longhaul_dead_letter_jobs',
    help: 'Dead-lettered jobs (FAILED after their last attempt), exact up to 10000, else the planner estimate',
    read: figures,
    show: (g, f) => g.set(f.deadJobs.n),
  });
}
