/**
 * The report's running aggregates, kept in the checkpoint state (jsonb) and updated by each chunk:
 * row count, per-metric count/sum/min/max, per-group count and sums, and a histogram. Sums are exact:
 * every metric value is held as an integer scaled by 10^scale (BigInt across chunks, kept as decimal
 * strings in the state), so the figures equal what `sum()` in SQL gives and do not depend on where a
 * run was interrupted.
 */

/** Most distinct groups kept; rows of further groups are counted in one "(other groups)" row. Bounds the state and the PDF. */
export const MAX_GROUPS = 500;
/** Bins of the histogram drawn in the PDF. */
export const HISTOGRAM_BINS = 24;

export type MetricAgg = {
  /** Decimal places every value of this metric is scaled by (grows if a value has more). */
  scale: number;
  /** Rows where the metric is not null. */
  n: number;
  /** Scaled integers as decimal strings. */
  sum: string;
  min: string | null;
  max: string | null;
};

export type GroupAgg = {
  /** The group's values, one per group_by column (null for SQL NULL). */
  values: Array<string | null>;
  count: number;
  /** Scaled sums, one per metric, at that metric's scale. */
  sums: string[];
};

export type Histogram = {
  /** What the bins are over: the time column (epoch seconds) or the first metric. */
  column: string;
  kind: 'time' | 'value';
  lo: number;
  hi: number;
  counts: number[];
};

export type Aggregates = {
  rows: number;
  metrics: MetricAgg[];
  groups: GroupAgg[];
  /** Rows of groups beyond MAX_GROUPS, when there were any. */
  other: GroupAgg | null;
  histogram: Histogram | null;
};

export function emptyAggregates(metricCount: number, histogram: Histogram | null): Aggregates {
  return {
    rows: 0,
    metrics: Array.from({ length: metricCount }, () => ({ scale: 0, n: 0, sum: '0', min: null, max: null })),
    groups: [],
    other: null,
    histogram,
  };
}

/** Splits a decimal text into its digits as an integer and its number of decimal places. */
function parseDecimal(text: string): { int: bigint; places: number } {
  const dot = text.indexOf('.');
  if (dot < 0) return { int: BigInt(text), places: 0 };
  return { int: BigInt(text.slice(0, dot) + text.slice(dot + 1)), places: text.length - dot - 1 };
}

const POW10: bigint[] = Array.from({ length: 40 }, (_, i) => 10n ** BigInt(i));
function pow10(n: number): bigint {
  return POW10[n] ?? 10n ** BigInt(n);
}

/**
 * Folds one chunk of rows into the aggregates (in place). `groupIdx` and `metricIdx` are the positions of
 * the group and metric columns in each row; `bucketIdx` is the position of the 1-based histogram bucket.
 */
export function foldChunk(
  agg: Aggregates,
  rows: ReadonlyArray<ReadonlyArray<string | null>>,
  groupIdx: readonly number[],
  metricIdx: readonly number[],
  bucketIdx: number | undefined,
): void {
  const m = metricIdx.length;
  // The chunk's own sums, as BigInt, scaled like the state; folded into the strings once at the end.
  const scales = agg.metrics.map((x) => x.scale);
  const sums = new Array<bigint>(m).fill(0n);
  const counts = new Array<number>(m).fill(0);
  const mins: Array<bigint | null> = agg.metrics.map((x) => (x.min === null ? null : BigInt(x.min)));
  const maxs: Array<bigint | null> = agg.metrics.map((x) => (x.max === null ? null : BigInt(x.max)));
  const groupIndex = new Map<string, { g: GroupAgg; sums: bigint[] }>();
  agg.groups.forEach((g) => groupIndex.set(groupKey(g.values), { g, sums: g.sums.map((s) => BigInt(s)) }));
  const otherSums = agg.other?.sums.map((s) => BigInt(s));
  let other = agg.other === null ? null : { g: agg.other, sums: otherSums ?? [] };
  const groups = [...agg.groups];

  /** A value with more decimals than the metric's scale so far: rescale everything already summed. */
  const rescale = (j: number, places: number): void => {
    const f = pow10(places - (scales[j] ?? 0));
    scales[j] = places;
    sums[j] = (sums[j] ?? 0n) * f;
    const mn = mins[j];
    const mx = maxs[j];
    if (mn !== undefined && mn !== null) mins[j] = mn * f;
    if (mx !== undefined && mx !== null) maxs[j] = mx * f;
    const st = agg.metrics[j];
    if (st !== undefined) st.sum = (BigInt(st.sum) * f).toString();
    for (const e of [...groupIndex.values(), ...(other === null ? [] : [other])]) e.sums[j] = (e.sums[j] ?? 0n) * f;
  };

  for (const row of rows) {
    const values = groupIdx.map((i) => row[i] ?? null);
    const key = groupKey(values);
    let entry = groupIndex.get(key);
    if (entry === undefined) {
      if (groups.length < MAX_GROUPS) {
        const g: GroupAgg = { values, count: 0, sums: [] };
        entry = { g, sums: new Array<bigint>(m).fill(0n) };
        groupIndex.set(key, entry);
        groups.push(g);
      } else {
        other ??= { g: { values: [], count: 0, sums: [] }, sums: new Array<bigint>(m).fill(0n) };
        entry = other;
      }
    }
    entry.g.count++;
    for (let j = 0; j < m; j++) {
      const text = row[metricIdx[j] ?? -1];
      if (text === null || text === undefined) continue;
      const { int, places } = parseDecimal(text);
      if (places > (scales[j] ?? 0)) rescale(j, places);
      const v = int * pow10((scales[j] ?? 0) - places);
      sums[j] = (sums[j] ?? 0n) + v;
      entry.sums[j] = (entry.sums[j] ?? 0n) + v;
      counts[j] = (counts[j] ?? 0) + 1;
      const mn = mins[j];
      const mx = maxs[j];
      if (mn === null || mn === undefined || v < mn) mins[j] = v;
      if (mx === null || mx === undefined || v > mx) maxs[j] = v;
    }
    if (bucketIdx !== undefined && agg.histogram !== null) {
      const b = Number(row[bucketIdx] ?? 0);
      const bins = agg.histogram.counts.length;
      const i = Math.min(bins, Math.max(1, b)) - 1;
      agg.histogram.counts[i] = (agg.histogram.counts[i] ?? 0) + 1;
    }
  }

  agg.rows += rows.length;
  agg.metrics.forEach((st, j) => {
    st.scale = scales[j] ?? 0;
    st.n += counts[j] ?? 0;
    st.sum = (BigInt(st.sum) + (sums[j] ?? 0n)).toString();
    st.min = mins[j]?.toString() ?? null;
    st.max = maxs[j]?.toString() ?? null;
  });
  for (const e of groupIndex.values()) e.g.sums = e.sums.map((s) => s.toString());
  if (other !== null) {
    other.g.sums = other.sums.map((s) => s.toString());
    agg.other = other.g;
  }
  agg.groups = groups;
}

function groupKey(values: ReadonlyArray<string | null>): string {
  // NUL cannot occur in Postgres text, so it separates values and marks SQL NULL unambiguously.
  return values.map((v) => (v === null ? '\u0000N' : `\u0000${v}`)).join('\u0000|');
}

/** A scaled integer (as text or BigInt) back to decimal text, e.g. (12345n, 2) → "123.45". */
export function toDecimal(scaled: string | bigint, scale: number): string {
  const v = typeof scaled === 'bigint' ? scaled : BigInt(scaled);
  if (scale === 0) return v.toString();
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString().padStart(scale + 1, '0');
  return `${neg ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/** The mean of a metric, rounded half away from zero to `places` decimals. */
export function meanOf(st: MetricAgg, places: number): string | null {
  if (st.n === 0) return null;
  // mean = sum / (n · 10^scale); computed at 10^places and rounded.
  const num = BigInt(st.sum) * pow10(places) * 2n;
  const den = BigInt(st.n) * pow10(st.scale);
  const q = num / den;
  const rounded = (q + (q >= 0n ? 1n : -1n)) / 2n;
  return toDecimal(rounded, places);
}
