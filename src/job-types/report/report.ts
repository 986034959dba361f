/**
 * `report`: a PDF and a CSV over a table or view of millions of rows, in checkpointed chunks.
 *
 * start: checks the input against the source, counts the rows (progress total) and fixes the last key,
 * so rows inserted later are not half-included. chunk: takes the next `chunkSize` rows by keyset
 * pagination, in one snapshot of the source: one query computes their aggregates in SQL (merged into the
 * running ones in the checkpoint state, along with the next cursor, the chunk's largest key), and a
 * `COPY … TO STDOUT (FORMAT csv)` of the same rows gives their CSV lines, written into report.csv at the
 * byte offset the last checkpoint recorded and fdatasynced before the checkpoint commits; a redone chunk
 * writes the same bytes at the same offset, so the CSV never duplicates rows. Node never parses a row.
 * The next chunk's read starts as soon as this chunk's aggregates give its last key, and the one after it
 * as soon as the next one's do, so Postgres reads on while chunks are written and checkpointed (a
 * checkpoint still counts only what was written).
 * finish: cuts the CSV at the checkpointed end, draws the PDF from the aggregates, records both as
 * artifacts and returns signed download links.
 */
import pg, { escapeIdentifier } from 'pg';
import { getTenant } from '../../tenants/repository.ts';
import { TokenSigner } from '../../tokens/signer.ts';
import type { Config } from '../../config.ts';
import { absorbConnectionErrors, type Queryable } from '../../db/pool.ts';
import { recordArtifact, signedLink, type ArtifactLink } from '../../storage/artifacts.ts';
import { jobFolder } from '../../storage/retention.ts';
import type { Storage } from '../../storage/storage.ts';
import {
  defineJobType,
  PermanentError,
  type ChunkResult,
  type JobContext,
  type Json,
} from '../../../packages/sdk/src/index.ts';
import {
  emptyAggregates,
  HISTOGRAM_BINS,
  meanOf,
  mergeChunk,
  toDecimal,
  type Aggregates,
  type ChunkAggregates,
  type Histogram,
} from './aggregate.ts';
import { SourceAllowList, SourceCatalogue, type Column } from './catalogue.ts';
import { csvLine } from './csv.ts';
import { reportInput, resolveReport, type ReportInput, type ResolvedReport } from './input.ts';
import { renderPdf } from './pdf.ts';
import { ChunkReader, type ChunkSql } from './reader.ts';

export interface ReportDeps {
  config: Config;
  storage: Storage;
  /**
   * The service's database: the sources are read there unless LONGHAUL_REPORT_DATABASE_URL names another.
   * Not `config.databaseUrl`, which is unset on the embedded database.
   */
  databaseUrl: string;
  /** The service's database, read for the catalogue when there is no separate report database. (Default: a pool of its own) */
  pool?: Queryable;
}

export type ReportState = {
  /** Chunks done. */
  chunks: number;
  /**
   * Bytes of report.csv that checkpointed chunks wrote, the header included (0 until the first chunk).
   * The file may hold more (a chunk written but not checkpointed before a crash): the redone chunk
   * rewrites it from here, and finish cuts off anything past the end.
   */
  csvBytes: number;
  /** The source's columns when the report started; a source whose columns change fails the report. */
  columns: string[];
  /** The largest key when the report started: rows inserted later are not included. */
  lastKey: string | null;
  agg: Aggregates;
};

/**
 * Connections to the report source (the report database, or the service's own) per worker process. A
 * chunk reads on two of them at once (its aggregates and its CSV, in one snapshot), and a report may
 * have two chunks' reads under way (the next one starts while this one's COPY ends).
 */
const REPORT_POOL_MAX = 8;
/** Idle connections to the report source close after this long. */
const REPORT_POOL_IDLE_MS = 10_000;
/** How long a tenant's name is trusted before it is read again (a renamed tenant's allow-list entries apply by then). */
const TENANT_TTL_MS = 60_000;
const PDF = 'application/pdf';
const CSV = 'text/csv; charset=utf-8';

/**
 * A chunk's values (cursor, last key, filters, histogram range) reach its SQL as transaction-local
 * settings, `current_setting('longhaul.report_N')` cast to the column's type, set by `set_config` with
 * bind parameters: COPY takes no parameters, and input never becomes SQL text.
 */
const SETTING = 'longhaul.report_';
/** The source's alias in a chunk's queries: `s.<key>` in ORDER BY is always the column, never an output alias. */
const ALIAS = 's';

/** Key of a job's CSV, written chunk after chunk in place. */
function csvKey(jobId: string): string {
  return `${jobFolder(jobId)}/report.csv`;
}

/** Column text as the CSV shows it: timestamps in UTC ISO 8601, everything else in Postgres's text form. */
function outputExpr(c: Column, expr = escapeIdentifier(c.name)): string {
  if (c.type === 'timestamp with time zone') return `((to_json((${expr}) AT TIME ZONE 'UTC') #>> '{}') || 'Z')`;
  if (c.type === 'timestamp without time zone') return `(to_json(${expr}) #>> '{}')`;
  if (c.kind === 'date') return `to_char(${expr}, 'YYYY-MM-DD')`;
  return `(${expr})::text`;
}

/**
 * A column as COPY should print it for the CSV: `outputExpr`'s text, but a column whose type prints
 * exactly that text anyway (integers, numeric, text, varchar) goes to COPY as it is: its `::text` cast
 * would only add to the COPY's cost (bench/RESULTS.md). (character(n) is not among them: `::text` trims its padding.)
 */
function csvExpr(c: Column, expr: string): string {
  return c.kind === 'integer' || c.kind === 'decimal' || c.type === 'text' || c.type === 'character varying'
    ? expr
    : outputExpr(c, expr);
}

/** Renders a value of a column's type into SQL: a bind parameter, or a setting. */
type ValueSql = (value: unknown, sqlType: string) => string;

/** WHERE conditions of the input's filters; every value goes through `v`, every name is a checked, quoted column. */
function filterSql(r: ResolvedReport, v: ValueSql): string[] {
  const where: string[] = [];
  const time = r.source.time;
  if (time !== undefined && r.from !== undefined)
    where.push(`${escapeIdentifier(time.name)} >= ${v(r.from, time.sqlType)}`);
  if (time !== undefined && r.to !== undefined) where.push(`${escapeIdentifier(time.name)} < ${v(r.to, time.sqlType)}`);
  for (const f of r.filters) {
    const list = `${f.column.sqlType}[]`;
    // The no-op cast makes the array an expression: `= ANY((SELECT …))` alone would read as a subquery of rows.
    where.push(`${escapeIdentifier(f.column.name)} = ANY(${v(f.values, list)}::${list})`);
  }
  return where;
}

/** Bind parameters `$n` (pg infers their types from the columns). */
function bindParams(params: unknown[]): ValueSql {
  return (value) => {
    params.push(value);
    return `$${params.length}`;
  };
}

/** A chunk's rows are `FROM <source> AS s WHERE <where> ORDER BY s.<key> LIMIT <n>`; every value is set first. */
function chunkSql(
  r: ResolvedReport,
  cursor: Json,
  lastKey: string,
  histogram: Histogram | null,
  limit: number,
): ChunkSql {
  // The only number written into the SQL: checked to be a positive integer.
  if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`invalid chunk size ${limit}`);
  const values: unknown[] = [];
  const v: ValueSql = (value, sqlType) => {
    values.push(value);
    // A scalar subquery is an InitPlan: evaluated once per statement, not once per row.
    return `(SELECT current_setting('${SETTING}${values.length}')::${sqlType})`;
  };
  const col = (c: Column): string => `${ALIAS}.${escapeIdentifier(c.name)}`;
  const key = r.source.key;
  const where = filterSql(r, v);
  where.push(`${col(key)} <= ${v(lastKey, key.sqlType)}`);
  if (typeof cursor === 'string') where.push(`${col(key)} > ${v(cursor, key.sqlType)}`);
  const hist = histogramExpr(r);
  let bin: string | undefined;
  if (hist !== undefined && histogram !== null) {
    const bins = histogram.counts.length;
    // 0-based; a value outside [lo, hi) or NULL counts in the first or last bin.
    bin = `least(${bins}, greatest(1, coalesce(width_bucket(${hist.expr(escapeIdentifier(hist.column.name))}, ${v(histogram.lo, 'float8')}, ${v(histogram.hi, 'float8')}, ${bins}), 0))) - 1`;
  }
  const rows = `FROM ${r.source.sql} AS ${ALIAS} WHERE ${where.join(' AND ')} ORDER BY ${col(key)} LIMIT ${limit}`;
  const g = r.groupBy.map((_, i) => `g${i}`);
  const m = r.metrics.map((_, j) => j);
  // Group values by their text form (as the CSV shows them), so equal text is one group.
  const picked = [
    `${col(key)} AS k`,
    ...r.groupBy.map((c, i) => `${outputExpr(c, col(c))} AS g${i}`),
    ...m.map((j) => `${col(r.metrics[j] ?? key)} AS m${j}`),
  ];
  if (bin !== undefined) picked.push(`${bin} AS b`);
  // One GROUP BY of group and bin (cheaper than grouping sets for groups, bins and totals);
  // the totals are summed in Node, and the last key is a window over the few grouped rows.
  const aggregates = `WITH c AS (SELECT ${picked.join(', ')} ${rows})
    SELECT ${bin === undefined ? 'NULL::int AS b' : 'b'}, ${g.join(', ')}, count(*) AS n, ${outputExpr(key, 'max(max(k)) OVER ()')} AS last,
           ${m.map((j) => `count(m${j}) AS n${j}, sum(m${j})::text AS s${j}, min(m${j})::text AS lo${j}, max(m${j})::text AS hi${j}`).join(', ')}
      FROM c GROUP BY ${[...g, ...(bin === undefined ? [] : ['b'])].join(', ')}
     ORDER BY min(k)`;
  const copy = `COPY (SELECT ${r.source.columns.map((c) => csvExpr(c, col(c))).join(', ')} ${rows}) TO STDOUT (FORMAT csv)`;
  const set = {
    text: `SELECT ${values.map((_, i) => `set_config('${SETTING}${i + 1}', $${i + 1}, true)`).join(', ')}`,
    values,
  };
  return { set, aggregates, copy };
}

type AggregateRow = { b: string | null; n: string; last: string | null } & { [column: string]: string | null };

/** The aggregate query's rows as one chunk's aggregates, its row count and its last key. */
function chunkAggregates(
  rows: AggregateRow[],
  groups: number,
  metrics: number,
): { chunk: ChunkAggregates; count: number; last: string | null } {
  const chunk: ChunkAggregates = rows.map((row) => ({
    values: Array.from({ length: groups }, (_, i) => row[`g${i}`] ?? null),
    bin: row.b === null ? null : Number(row.b),
    count: Number(row.n),
    metrics: Array.from({ length: metrics }, (_, j) => ({
      n: Number(row[`n${j}`]),
      sum: row[`s${j}`] ?? null,
      min: row[`lo${j}`] ?? null,
      max: row[`hi${j}`] ?? null,
    })),
  }));
  return { chunk, count: chunk.reduce((n, part) => n + part.count, 0), last: rows[0]?.last ?? null };
}

/**
 * What the histogram is over, as a float8 expression of a column expression `x`: the time column's epoch,
 * else the first metric. Each is monotonic in `x`, so `expr(min(c))` is `min(expr(c))`: start() takes the
 * range from min/max of the column itself, cheaper than converting every row first.
 */
function histogramExpr(
  r: ResolvedReport,
): { expr: (x: string) => string; column: Column; kind: Histogram['kind'] } | undefined {
  const time = r.source.time;
  // date_part gives the epoch as float8 directly (extract's numeric costs more per row); the same value.
  if (time?.kind === 'time') return { expr: (x) => `date_part('epoch', ${x})`, column: time, kind: 'time' };
  if (time !== undefined) return { expr: (x) => `extract(epoch from ${x})::float8`, column: time, kind: 'time' };
  const m = r.metrics[0];
  return m === undefined ? undefined : { expr: (x) => `(${x})::float8`, column: m, kind: 'value' };
}

function describeFilters(input: ReportInput): string {
  const parts = Object.entries(input.filters ?? {}).map(
    ([k, v]) => `${k} = ${Array.isArray(v) ? v.join(' | ') : String(v)}`,
  );
  return parts.length === 0 ? 'none' : parts.join('; ');
}

export function createReportJobType(deps: ReportDeps) {
  const { config, storage } = deps;
  const allow = new SourceAllowList(config.report.sources);
  let sourcePool: pg.Pool | undefined;
  /** The report source: the separate report database when configured (a read replica), else the service's. */
  const source = (): pg.Pool => {
    if (sourcePool === undefined) {
      sourcePool = new pg.Pool({
        connectionString: config.report.databaseUrl ?? deps.databaseUrl,
        max: REPORT_POOL_MAX,
        idleTimeoutMillis: REPORT_POOL_IDLE_MS,
        allowExitOnIdle: true,
        application_name: 'longhaul-report',
      });
      absorbConnectionErrors(sourcePool);
    }
    return sourcePool;
  };
  const reader = new ChunkReader<AggregateRow>(source);
  const reportDb = (): pg.Pool | undefined => (config.report.databaseUrl === undefined ? undefined : source());
  const catalogue = new SourceCatalogue(() => reportDb() ?? deps.pool ?? source());
  let signer: Promise<TokenSigner> | undefined;

  const sourceDb = (ctx: JobContext<ReportInput>): Queryable => reportDb() ?? ctx.db;
  const wantsCsv = (input: ReportInput): boolean => input.formats.includes('csv');

  const tenantNames = new Map<string, { at: number; name: string }>();
  /**
   * The tenant's name (the allow-list names tenants), read at most once per TENANT_TTL_MS: a chunk that
   * reads nothing through ctx.db leaves its checkpoint to the worker's group commit.
   */
  async function tenantName(ctx: JobContext<ReportInput>): Promise<string> {
    const hit = tenantNames.get(ctx.job.tenantId);
    if (hit !== undefined && Date.now() - hit.at < TENANT_TTL_MS) return hit.name;
    const name = (await getTenant(ctx.db, ctx.job.tenantId))?.name ?? '';
    tenantNames.set(ctx.job.tenantId, { at: Date.now(), name });
    return name;
  }

  /** The source, checked against the allow-list and the catalogue; a problem fails the job for good. */
  async function resolve(ctx: JobContext<ReportInput>): Promise<ResolvedReport> {
    const tenant = await tenantName(ctx);
    if (!allow.allows(tenant, ctx.job.input.source))
      throw new PermanentError(`source "${ctx.job.input.source}" is not allowed for this tenant`);
    const source = await catalogue.get(ctx.job.input.source);
    if (source === undefined)
      throw new PermanentError(`source "${ctx.job.input.source}" does not exist or has no single-column key`);
    const { issues, report } = resolveReport(ctx.job.input, source);
    if (report === undefined)
      throw new PermanentError(
        `input does not fit the source: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`,
      );
    return report;
  }

  /**
   * One chunk: its aggregates merged into the state, its CSV lines written at the checkpointed end; if
   * `durable`, their fdatasync runs while the next chunk starts, and the checkpoint waits for it.
   */
  async function readAndStore(
    ctx: JobContext<ReportInput> & { chunkSize: number },
    cursor: Json,
    prior: ReportState,
    durable: boolean,
  ): Promise<ChunkResult<ReportState>> {
    if (prior.lastKey === null) return { cursor, done: true, processed: 0, state: prior };
    const r = await resolve(ctx);
    if (r.source.columns.map((c) => c.name).join(',') !== prior.columns.join(','))
      throw new PermanentError(`the columns of ${r.source.name} changed while the report ran`);
    const csv = wantsCsv(ctx.job.input);
    const read = reader.read(ctx.job.id, chunkSql(r, cursor, prior.lastKey, prior.agg.histogram, ctx.chunkSize), csv);
    const { chunk, count, last } = chunkAggregates(await read.rows, r.groupBy.length, r.metrics.length);
    if (count === 0) {
      (await read.csv)?.release();
      return { cursor, done: true, processed: 0, state: prior };
    }
    const done = count < ctx.chunkSize || last === prior.lastKey;
    if (!done) {
      // The next chunk's rows are read while this one's COPY ends, its CSV is written and its checkpoint
      // commits; and the one after it as soon as the next one's aggregates tell where it begins, so reads
      // run back to back whatever the writes and checkpoints take. Reads only: checkpoints are unchanged.
      const lastKey = prior.lastKey;
      const sqlFrom = (from: string | null) => chunkSql(r, from, lastKey, prior.agg.histogram, ctx.chunkSize);
      const next = reader.readAhead(ctx.job.id, sqlFrom(last), csv);
      void next.rows.then(
        (rows) => {
          const after = chunkAggregates(rows, r.groupBy.length, r.metrics.length);
          if (after.count === ctx.chunkSize && after.last !== lastKey)
            reader.readAhead(ctx.job.id, sqlFrom(after.last), csv);
        },
        () => undefined,
      );
    }
    const copied = await read.csv;
    const state = structuredClone(prior);
    mergeChunk(state.agg, chunk);
    let synced: Promise<void> | undefined;
    if (copied !== undefined) {
      // In place at the checkpointed end, durable before the checkpoint that counts it commits; a redo of
      // this chunk writes the same bytes at the same offset. The first chunk writes the header too.
      const bytes =
        prior.csvBytes === 0 ? Buffer.concat([Buffer.from(csvLine(prior.columns)), copied.lines]) : copied.lines;
      const key = csvKey(ctx.job.id);
      try {
        await storage.writeAt(key, prior.csvBytes, bytes, { durable: false });
      } finally {
        copied.release();
      }
      if (durable) synced = storage.sync(key);
      state.csvBytes += bytes.length;
    }
    state.chunks++;
    return { cursor: last, done, processed: count, state, durable: synced };
  }

  return defineJobType<ReportInput, ReportState, { [key: string]: Json }>({
    name: 'report',
    input: reportInput,
    chunkSize: config.report.chunkSize,

    async check(input, ctx) {
      if (!allow.allows(ctx.tenant.name, input.source)) {
        const list = allow.sourcesOf(ctx.tenant.name);
        return [
          {
            field: 'source',
            message: `"${input.source}" is not a report source for this tenant; allowed: ${list.length === 0 ? 'none' : list.join(', ')}`,
          },
        ];
      }
      const source = await catalogue.get(input.source);
      if (source === undefined)
        return [
          {
            field: 'source',
            message: `"${input.source}" does not exist in the report database, or has no single-column key to page by`,
          },
        ];
      return resolveReport(input, source).issues;
    },

    async start(ctx) {
      const r = await resolve(ctx);
      const params: unknown[] = [];
      const where = filterSql(r, bindParams(params));
      const hist = histogramExpr(r);
      const key = escapeIdentifier(r.source.key.name);
      const range = (fn: string): string =>
        hist === undefined ? 'NULL::float8' : hist.expr(`${fn}(${escapeIdentifier(hist.column.name)})`);
      const { rows } = await sourceDb(ctx).query<{
        n: string;
        last: string | null;
        lo: number | null;
        hi: number | null;
      }>(
        `SELECT count(*)::bigint AS n, ${outputExpr(r.source.key, `max(${key})`)} AS last,
                ${range('min')} AS lo, ${range('max')} AS hi
           FROM ${r.source.sql} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}`,
        params,
      );
      const row = rows[0];
      const total = Number(row?.n ?? 0);
      const lo = row?.lo ?? null;
      const hi = row?.hi ?? null;
      const histogram: Histogram | null =
        hist === undefined || lo === null || hi === null
          ? null
          : {
              column: hist.column.name,
              kind: hist.kind,
              lo,
              hi: hi > lo ? hi : lo + 1,
              counts: new Array<number>(HISTOGRAM_BINS).fill(0),
            };
      return {
        total,
        cursor: null,
        state: {
          chunks: 0,
          csvBytes: 0,
          columns: r.source.columns.map((c) => c.name),
          lastKey: row?.last ?? null,
          agg: emptyAggregates(r.metrics.length, histogram),
        },
      };
    },

    async chunk(ctx, cursor, prior) {
      if (config.report.checkpoints) return readAndStore(ctx, cursor, prior, true);
      // Checkpoints off (only to measure their cost): every chunk in this one step, CSV writes not synced; one commit at the end.
      let out: ChunkResult<ReportState> = { cursor, done: false, processed: 0, state: prior };
      let processed = 0;
      while (!out.done) {
        ctx.signal.throwIfAborted();
        out = await readAndStore(ctx, out.cursor, out.state, false);
        processed += out.processed;
      }
      return { ...out, processed };
    },

    async finish(ctx, state) {
      const r = await resolve(ctx);
      const folder = jobFolder(ctx.job.id);
      const stored: Array<{ name: string; key: string; type: string; size: number }> = [];
      if (wantsCsv(ctx.job.input)) {
        const key = csvKey(ctx.job.id);
        // Cut off what no checkpoint counts (durably: with checkpoints off, the chunks' writes were not synced);
        // a report of no rows is its header alone.
        const tail = state.csvBytes === 0 ? Buffer.from(csvLine(state.columns)) : Buffer.alloc(0);
        await storage.writeAt(key, state.csvBytes, tail, { truncate: true });
        stored.push({ name: 'report.csv', key, type: CSV, size: state.csvBytes + tail.length });
      }
      if (ctx.job.input.formats.includes('pdf')) {
        const key = `${folder}/report.pdf`;
        const doc = renderPdf(
          {
            title: ctx.job.input.title ?? `Report on ${r.source.name}`,
            source: r.source.name,
            filters: describeFilters(ctx.job.input),
            groupBy: r.groupBy.map((c) => c.name),
            metrics: r.metrics.map((c) => c.name),
            generatedAt: new Date(),
            jobId: ctx.job.id,
          },
          state.agg,
        );
        const { size } = await storage.put(key, doc);
        stored.push({ name: 'report.pdf', key, type: PDF, size });
      }
      signer ??= TokenSigner.load(ctx.db, config.signingSecret);
      const s = await signer;
      const links: ArtifactLink[] = [];
      for (const a of stored) {
        const row = await recordArtifact(ctx.db, {
          jobId: ctx.job.id,
          tenantId: ctx.job.tenantId,
          name: a.name,
          storageKey: a.key,
          contentType: a.type,
          size: a.size,
          retentionSeconds: config.artifactRetentionSeconds,
        });
        links.push(await signedLink(s, config.publicUrl, row, config.artifactUrlTtlSeconds));
      }
      const agg = state.agg;
      return {
        rows: agg.rows,
        source: r.source.name,
        artifacts: links,
        summary: {
          metrics: Object.fromEntries(
            r.metrics.map((c, j) => {
              const st = agg.metrics[j];
              if (st === undefined) return [c.name, null];
              const dec = (v: string | null): string | null => (v === null ? null : toDecimal(v, st.scale));
              return [
                c.name,
                {
                  rows: st.n,
                  sum: toDecimal(st.sum, st.scale),
                  mean: meanOf(st, 2),
                  min: dec(st.min),
                  max: dec(st.max),
                },
              ];
            }),
          ),
          groups: agg.groups.length,
          groups_truncated: agg.other !== null,
        },
      };
    },
  });
}
