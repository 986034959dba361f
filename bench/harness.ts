/** What a benchmark module gets and returns. Each row is a figure beside its baseline, measured in the same run. */
import { randomBytes } from 'node:crypto';
import { cloneDatabase } from '../test/support/scratch.ts';

export interface BenchRow {
  /** What was measured, e.g. "POST /v1/jobs accepted/s (16 clients)". */
  name: string;
  value: number;
  unit: string;
  /** What the figure is compared with, measured in the same run; omitted for absolute figures. */
  baselineName?: string;
  baseline?: number;
  /** The target, as text (e.g. "ratio ≥ 0.6", "p50 ≤ 10 ms"). */
  target?: string;
  /** Whether the row met its target, when the target can be checked. */
  met?: boolean;
  /** Ratio value/baseline, printed when a baseline exists; set it to invert (lower is better). */
  ratio?: number;
}

export interface BenchContext {
  /** A Postgres server URL (database part is ignored). */
  serverUrl: string;
  /** A fresh, migrated database with pg-boss's schema, cloned from the template. */
  createDatabase(): Promise<{ url: string; drop(): Promise<void> }>;
  log(message: string): void;
}

export interface BenchModule {
  title: string;
  run(ctx: BenchContext): Promise<BenchRow[]>;
}

export const TEMPLATE = 'longhaul_bench_template';

export async function cloneTemplate(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  return cloneDatabase(serverUrl, TEMPLATE, `b_${randomBytes(5).toString('hex')}`);
}

/** Percentile (0–100) of a list of numbers, by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}
