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

/** Figures of one metric over some rows, as SQL computed them: decimal text, null where SQL gives NULL. */
export type MetricFigures = { n: number; sum: string | null; min: string | null; max: string | null };

/**
 * One chunk's aggregates as SQL computed them: per group and histogram bin (one GROUP BY, the cheapest
 * for Postgres), in order of their first row (by key), so a group comes once per bin it has rows in.
 */
export type ChunkAggregates = Array<{
  /** The group's values, one per group_by column (null for SQL NULL). */
  values: Array<string | null>;
  /** The rows' histogram bin (0-based), or null when there is no histogram. */
  bin: number | null;
  count: number;
  /** Per metric. */
  metrics: MetricFigures[];
}>;

/**
 * Merges one chunk's aggregates into the running ones (in place). The result is the same as folding the
 * chunk's rows one by one: new groups are taken in order of their first row until MAX_GROUPS, the rest
 * go to "(other groups)", and a metric's scale grows to the most decimal places any figure has.
 */
export function mergeChunk(agg: Aggregates, chunk: ChunkAggregates): void {
  const m = agg.metrics.length;
  // Every figure of the chunk, parsed; the metric's scale becomes the most places seen so far.
  const parse = (v: string | null | undefined) => (v === null || v === undefined ? null : parseDecimal(v));
  const figures = chunk.map((part) =>
    part.metrics.map((x) => ({ n: x.n, sum: parse(x.sum), min: parse(x.min), max: parse(x.max) })),
  );
  for (let j = 0; j < m; j++) {
    const st = agg.metrics[j];
    if (st === undefined) continue;
    let places = st.scale;
    for (const f of figures)
      for (const d of [f[j]?.sum, f[j]?.min, f[j]?.max])
        if (d !== null && d !== undefined) places = Math.max(places, d.places);
    if (places > st.scale) rescale(agg, j, places);
  }
  const scaled = (j: number, d: { int: bigint; places: number } | null | undefined): bigint | null =>
    d === null || d === undefined ? null : d.int * pow10((agg.metrics[j]?.scale ?? 0) - d.places);

  // Totals as BigInt while the chunk is folded in, written back as text once.
  const totals = agg.metrics.map((st) => ({
    sum: BigInt(st.sum),
    min: st.min === null ? null : BigInt(st.min),
    max: st.max === null ? null : BigInt(st.max),
  }));
  const index = new Map(agg.groups.map((g) => [groupKey(g.values), g]));
  const h = agg.histogram;
  chunk.forEach((part, i) => {
    agg.rows += part.count;
    for (let j = 0; j < m; j++) {
      const st = agg.metrics[j];
      const t = totals[j];
      const f = figures[i]?.[j];
      if (st === undefined || t === undefined || f === undefined) continue;
      st.n += f.n;
      t.sum += scaled(j, f.sum) ?? 0n;
      const mn = scaled(j, f.min);
      if (mn !== null && (t.min === null || mn < t.min)) t.min = mn;
      const mx = scaled(j, f.max);
      if (mx !== null && (t.max === null || mx > t.max)) t.max = mx;
    }
    let g = index.get(groupKey(part.values));
    if (g === undefined) {
      if (agg.groups.length < MAX_GROUPS) {
        g = { values: part.values, count: 0, sums: new Array<string>(m).fill('0') };
        index.set(groupKey(part.values), g);
        agg.groups.push(g);
      } else {
        agg.other ??= { values: [], count: 0, sums: new Array<string>(m).fill('0') };
        g = agg.other;
      }
    }
    g.count += part.count;
    for (let j = 0; j < m; j++) {
      const v = scaled(j, figures[i]?.[j]?.sum);
      if (v !== null) g.sums[j] = (BigInt(g.sums[j] ?? '0') + v).toString();
    }
    if (h !== null && part.bin !== null && part.bin >= 0 && part.bin < h.counts.length)
      h.counts[part.bin] = (h.counts[part.bin] ?? 0) + part.count;
  });
  agg.metrics.forEach((st, j) => {
    const t = totals[j];
    if (t === undefined) return;
    st.sum = t.sum.toString();
    st.min = t.min === null ? null : t.min.toString();
    st.max = t.max === null ? null : t.max.toString();
  });
}

/** Raises metric `j` to `places` decimal places: its sum, min, max and every group's sum are multiplied to match. */
function rescale(agg: Aggregates, j: number, places: number): void {
  const st = agg.metrics[j];
  if (st === undefined) return;
  const f = pow10(places - st.scale);
  const up = (v: string): string => (BigInt(v) * f).toString();
  st.scale = places;
  st.sum = up(st.sum);
  if (st.min !== null) st.min = up(st.min);
  if (st.max !== null) st.max = up(st.max);
  for (const g of agg.other === null ? agg.groups : [...agg.groups, agg.other]) g.sums[j] = up(g.sums[j] ?? '0');
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
