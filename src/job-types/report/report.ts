/**
 * `report`: a PDF and a CSV over a table or view of millions of rows, in checkpointed chunks.
 *
 * start: checks the input against the source, counts the rows (progress total) and fixes the last key,
 * so rows inserted later are not half-included. chunk: reads the next `chunkSize` rows by keyset
 * pagination, folds them into the aggregates (in the checkpoint state) and stores their CSV lines as
 * part k, durably, before the checkpoint commits; a redone chunk rewrites its part whole, so parts never
 * duplicate rows. finish: concatenates the parts into the CSV (streamed), draws the PDF from the
 * aggregates, records both as artifacts and returns signed download links.
 */
import pg, { escapeIdentifier } from 'pg';
import { TokenSigner } from '../../api/tokens.ts';
import type { Config } from '../../config.ts';
import type { Queryable } from '../../db/pool.ts';
import { recordArtifact, signedLink, type ArtifactLink } from '../../storage/artifacts.ts';
import { jobFolder } from '../../storage/retention.ts';
import type { Storage } from '../../storage/storage.ts';
import { defineJobType, PermanentError, type JobContext, type Json } from '../../worker/sdk.ts';
import { emptyAggregates, foldChunk, HISTOGRAM_BINS, meanOf, toDecimal, type Aggregates, type Histogram } from './aggregate.ts';
import { SourceAllowList, SourceCatalogue, type Column } from './catalogue.ts';
import { csvLine, csvLines } from './csv.ts';
import { reportInput, resolveReport, type ReportInput, type ResolvedReport } from './input.ts';
import { renderPdf } from './pdf.ts';

export interface ReportDeps {
  config: Config;
  storage: Storage;
  /** The service's database, read for the catalogue when there is no separate report database. (Default: a pool of its own) */
  pool?: Queryable;
}

export type ReportState = {
  /** Chunks done = CSV parts written. */
  chunks: number;
  /** Bytes of CSV in the parts so far (the final CSV is the header plus these). */
  csvBytes: number;
  /** The source's columns when the report started; a source whose columns change fails the report. */
  columns: string[];
  /** The largest key when the report started: rows inserted later are not included. */
  lastKey: string | null;
  agg: Aggregates;
};

/** Connections to a separate report database per worker process. */
const REPORT_POOL_MAX = 4;
/** Idle connections to the report database close after this long. */
const REPORT_POOL_IDLE_MS = 10_000;
const PDF = 'application/pdf';
const CSV = 'text/csv; charset=utf-8';

/** Every column comes back as its text form: exact decimals, and CSV bytes that do not depend on the client. */
const TEXT_TYPES = { getTypeParser: () => (v: string) => v };

/** Key of CSV part `k` of a job (zero-padded so names sort in order). */
function partKey(jobId: string, k: number): string {
  return `${jobFolder(jobId)}/parts/${String(k).padStart(8, '0')}.csv`;
}

/** Column text as the CSV shows it: timestamps in UTC ISO 8601, everything else in Postgres's text form. */
function outputExpr(c: Column, expr = escapeIdentifier(c.name)): string {
  if (c.type === 'timestamp with time zone') return `((to_json((${expr}) AT TIME ZONE 'UTC') #>> '{}') || 'Z')`;
  if (c.type === 'timestamp without time zone') return `(to_json(${expr}) #>> '{}')`;
  if (c.kind === 'date') return `to_char(${expr}, 'YYYY-MM-DD')`;
  return `(${expr})::text`;
}

/** WHERE conditions of the input's filters; every value is a parameter, every name a checked, quoted column. */
function filterSql(r: ResolvedReport, params: unknown[]): string[] {
  const p = (v: unknown): string => {
    params.push(v);
    return `$${params.length}`;
  };
  const where: string[] = [];
  const time = r.source.time;
  if (time !== undefined && r.from !== undefined) where.push(`${escapeIdentifier(time.name)} >= ${p(r.from)}`);
  if (time !== undefined && r.to !== undefined) where.push(`${escapeIdentifier(time.name)} < ${p(r.to)}`);
  for (const f of r.filters) where.push(`${escapeIdentifier(f.column.name)} = ANY(${p(f.values)})`);
  return where;
}

function histogramExpr(r: ResolvedReport): { expr: string; column: string; kind: Histogram['kind'] } | undefined {
  const time = r.source.time;
  if (time !== undefined) return { expr: `extract(epoch from ${escapeIdentifier(time.name)})::float8`, column: time.name, kind: 'time' };
  const m = r.metrics[0];
  return m === undefined ? undefined : { expr: `${escapeIdentifier(m.name)}::float8`, column: m.name, kind: 'value' };
}

function describeFilters(input: ReportInput): string {
  const parts = Object.entries(input.filters ?? {}).map(([k, v]) => `${k} = ${Array.isArray(v) ? v.join(' | ') : String(v)}`);
  return parts.length === 0 ? 'none' : parts.join('; ');
}

export function createReportJobType(deps: ReportDeps) {
  const { config, storage } = deps;
  const allow = new SourceAllowList(config.report.sources);
  let reportPool: pg.Pool | undefined;
  /** The separate report database, when configured (a read replica). */
  const reportDb = (): pg.Pool | undefined => {
    if (config.report.databaseUrl === undefined) return undefined;
    reportPool ??= new pg.Pool({
      connectionString: config.report.databaseUrl,
      max: REPORT_POOL_MAX,
      idleTimeoutMillis: REPORT_POOL_IDLE_MS,
      allowExitOnIdle: true,
      application_name: 'longhaul-report',
    });
    reportPool.on('error', () => undefined);
    return reportPool;
  };
  let ownPool: pg.Pool | undefined;
  const catalogue = new SourceCatalogue(() => {
    const db = reportDb() ?? deps.pool;
    if (db !== undefined) return db;
    ownPool ??= new pg.Pool({ connectionString: config.databaseUrl, max: 1, allowExitOnIdle: true });
    return ownPool;
  });
  let signer: Promise<TokenSigner> | undefined;

  /** The source, checked against the allow-list and the catalogue; a problem fails the job for good. */
  async function resolve(ctx: JobContext<ReportInput>): Promise<ResolvedReport> {
    const { rows } = await ctx.db.query<{ name: string }>('SELECT name FROM tenants WHERE id = $1', [ctx.job.tenantId]);
    const tenant = rows[0]?.name ?? '';
    if (!allow.allows(tenant, ctx.job.input.source)) throw new PermanentError(`source "${ctx.job.input.source}" is not allowed for this tenant`);
    const source = await catalogue.get(ctx.job.input.source);
    if (source === undefined) throw new PermanentError(`source "${ctx.job.input.source}" does not exist or has no single-column key`);
    const { issues, report } = resolveReport(ctx.job.input, source);
    if (report === undefined) throw new PermanentError(`input does not fit the source: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`);
    return report;
  }

  const sourceDb = (ctx: JobContext<ReportInput>): Queryable => reportDb() ?? ctx.db;
  const wantsCsv = (input: ReportInput): boolean => input.formats.includes('csv');

  return defineJobType<ReportInput, ReportState, { [key: string]: Json }>({
    name: 'report',
    input: reportInput,
    chunkSize: config.report.chunkSize,

    async check(input, ctx) {
      if (!allow.allows(ctx.tenant.name, input.source)) {
        const list = allow.sourcesOf(ctx.tenant.name);
        return [{ field: 'source', message: `"${input.source}" is not a report source for this tenant; allowed: ${list.length === 0 ? 'none' : list.join(', ')}` }];
      }
      const source = await catalogue.get(input.source);
      if (source === undefined) return [{ field: 'source', message: `"${input.source}" does not exist in the report database, or has no single-column key to page by` }];
      return resolveReport(input, source).issues;
    },

    async start(ctx) {
      const r = await resolve(ctx);
      const params: unknown[] = [];
      const where = filterSql(r, params);
      const hist = histogramExpr(r);
      const key = escapeIdentifier(r.source.key.name);
      const { rows } = await sourceDb(ctx).query<{ n: string; last: string | null; lo: number | null; hi: number | null }>(
        `SELECT count(*)::bigint AS n, ${outputExpr(r.source.key, `max(${key})`)} AS last,
                min(${hist?.expr ?? 'NULL::float8'}) AS lo, max(${hist?.expr ?? 'NULL::float8'}) AS hi
           FROM ${r.source.sql} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}`,
        params,
      );
      const row = rows[0];
      const total = Number(row?.n ?? 0);
      const lo = row?.lo ?? null;
      const hi = row?.hi ?? null;
      const histogram: Histogram | null =
        hist === undefined || lo === null || hi === null ? null : { column: hist.column, kind: hist.kind, lo, hi: hi > lo ? hi : lo + 1, counts: new Array<number>(HISTOGRAM_BINS).fill(0) };
      return {
        total,
        cursor: null,
        state: { chunks: 0, csvBytes: 0, columns: r.source.columns.map((c) => c.name), lastKey: row?.last ?? null, agg: emptyAggregates(r.metrics.length, histogram) },
      };
    },

    async chunk(ctx, cursor, prior) {
      if (prior.lastKey === null) return { cursor, done: true, processed: 0, state: prior };
      const r = await resolve(ctx);
      if (r.source.columns.map((c) => c.name).join(',') !== prior.columns.join(',')) throw new PermanentError(`the columns of ${r.source.name} changed while the report ran`);
      const state = structuredClone(prior);
      const params: unknown[] = [];
      const where = filterSql(r, params);
      const key = escapeIdentifier(r.source.key.name);
      params.push(prior.lastKey);
      where.push(`${key} <= $${params.length}`);
      if (typeof cursor === 'string') {
        params.push(cursor);
        where.push(`${key} > $${params.length}`);
      }
      const hist = histogramExpr(r);
      const h = state.agg.histogram;
      let bucket = '';
      if (hist !== undefined && h !== null) {
        params.push(h.lo, h.hi);
        bucket = `, width_bucket(${hist.expr}, $${params.length - 1}::float8, $${params.length}::float8, ${h.counts.length})::text`;
      }
      params.push(ctx.chunkSize);
      const cols = r.source.columns;
      const { rows } = await sourceDb(ctx).query<Array<string | null>>({
        // Output columns get positional names: ORDER BY must see the key column, not its text form.
        text: `SELECT ${cols.map((c, i) => `${outputExpr(c)} AS c${i}`).join(', ')}${bucket}
                 FROM ${r.source.sql} WHERE ${where.join(' AND ')}
                ORDER BY ${key} LIMIT $${params.length}`,
        values: params,
        rowMode: 'array',
        types: TEXT_TYPES,
      });
      if (rows.length === 0) return { cursor, done: true, processed: 0, state: prior };
      const index = (c: Column): number => cols.indexOf(c);
      foldChunk(state.agg, rows, r.groupBy.map(index), r.metrics.map(index), bucket === '' ? undefined : cols.length);
      if (wantsCsv(ctx.job.input)) {
        const text = csvLines(rows, cols.length);
        // Durable before the checkpoint that counts it commits; a redo of this chunk rewrites the same part.
        const { size } = await storage.put(partKey(ctx.job.id, state.chunks), text);
        state.csvBytes += size;
      }
      state.chunks++;
      const last = rows[rows.length - 1]?.[index(r.source.key)] ?? null;
      const done = rows.length < ctx.chunkSize || last === prior.lastKey;
      return { cursor: last, done, processed: rows.length, state };
    },

    async finish(ctx, state) {
      const r = await resolve(ctx);
      const folder = jobFolder(ctx.job.id);
      const stored: Array<{ name: string; key: string; type: string; size: number }> = [];
      if (wantsCsv(ctx.job.input)) {
        const header = csvLine(state.columns);
        const key = `${folder}/report.csv`;
        const expected = Buffer.byteLength(header) + state.csvBytes;
        // A redone finish finds the CSV already whole (the parts are gone by then).
        if ((await storage.stat(key))?.size !== expected) {
          const { size } = await storage.put(key, concatParts(storage, ctx.job.id, header, state.chunks));
          if (size !== expected) throw new Error(`report.csv has ${size} bytes; the parts held ${expected}`);
        }
        await storage.delete(`${folder}/parts`);
        stored.push({ name: 'report.csv', key, type: CSV, size: expected });
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
              return [c.name, { rows: st.n, sum: toDecimal(st.sum, st.scale), mean: meanOf(st, 2), min: dec(st.min), max: dec(st.max) }];
            }),
          ),
          groups: agg.groups.length,
          groups_truncated: agg.other !== null,
        },
      };
    },
  });
}

/** The header, then every part in order, as one stream (never more than one part's buffer in memory). */
async function* concatParts(storage: Storage, jobId: string, header: string, chunks: number): AsyncGenerator<Uint8Array> {
  yield Buffer.from(header);
  for (let k = 0; k < chunks; k++) {
    const part = await storage.get(partKey(jobId, k));
    if (part === undefined) throw new PermanentError(`CSV part ${k} is missing from the storage`);
    for await (const chunk of part.stream as AsyncIterable<Uint8Array>) yield chunk;
  }
}
