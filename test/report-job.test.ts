/**
 * The report job type driven directly (start, chunks, finish, each in its own transaction as the runtime
 * does), over demo data, checked against SQL computed independently, the PDF's text (read by pdf.js) and
 * the CSV's bytes.
 */
import { EventEmitter } from 'node:events';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Connection } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../src/config.ts';
import { createPool, withTransaction, type Pool, type Queryable } from '../src/db/pool.ts';
import { toDecimal } from '../src/job-types/report/aggregate.ts';
import { CopyCsvLines } from '../src/job-types/report/copy-csv.ts';
import { createReportJobType, type ReportState } from '../src/job-types/report/report.ts';
import { seedDemoOrders } from '../src/job-types/report/seed.ts';
import { createLogger } from '../src/observability/logger.ts';
import { LocalStorage } from '../src/storage/local.ts';
import { createTenant, type CreatedTenant } from '../src/tenants/repository.ts';
import type { Json } from '../packages/sdk/src/index.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertJob } from './support/jobs.ts';
import { readPdf } from './support/pdf.ts';

const ROWS = 23_456;
const CHUNK = 5_000;

let db: TestDatabase;
let pool: Pool;
let dir: string;
let config: Config;
let tenant: CreatedTenant;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, 4);
  dir = await mkdtemp(path.join(tmpdir(), 'longhaul-report-'));
  config = loadConfig({
    DATABASE_URL: db.url,
    LONGHAUL_DATA_DIR: dir,
    LONGHAUL_REPORT_SOURCES: 'demo_orders,odd_values',
    LONGHAUL_REPORT_CHUNK_SIZE: String(CHUNK),
  });
  tenant = await createTenant(pool, 'report-tenant');
  await seedDemoOrders(pool, ROWS);
});
afterAll(async () => {
  await pool.end();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

type ReportType = ReturnType<typeof createReportJobType>;

const newJob = (input: Json): Promise<string> =>
  insertJob(pool, tenant.id, { type: 'report', input: JSON.stringify(input) });

/**
 * Runs a report the way the runtime does: start, then each chunk in a transaction that also saves the
 * checkpoint, then finish. `failAt` throws inside chunk k's transaction after the chunk ran (its CSV bytes
 * are written, its checkpoint rolls back), runs `afterFailure`, then resumes from the last checkpoint,
 * counting redone chunks.
 */
async function runReport(
  type: ReportType,
  input: Json,
  failAt?: number,
  afterFailure?: (id: string) => Promise<void>,
): Promise<{ id: string; result: Json; state: ReportState; chunkCalls: number }> {
  const id = await newJob(input);
  const parsed = type.input.parse(input);
  const ctx = (client: Queryable, attempt = 1) => ({
    job: { id, tenantId: tenant.id, type: 'report', input: parsed, metadata: null, attempt },
    log: createLogger('silent'),
    signal: new AbortController().signal,
    db: client,
  });
  const started = await withTransaction(pool, (c) => type.start(ctx(c)));
  await pool.query('UPDATE jobs SET total = $2, checkpoint_cursor = $3, checkpoint_state = $4 WHERE id = $1', [
    id,
    started.total,
    JSON.stringify(started.cursor ?? null),
    JSON.stringify(started.state),
  ]);
  let chunkCalls = 0;
  let attempt = 1;
  for (;;) {
    const { rows } = await pool.query<{ checkpoint_cursor: Json; checkpoint_state: ReportState }>(
      'SELECT checkpoint_cursor, checkpoint_state FROM jobs WHERE id = $1',
      [id],
    );
    const cp = rows[0];
    if (cp === undefined) throw new Error('job vanished');
    try {
      const done = await withTransaction(pool, async (c) => {
        chunkCalls++;
        const out = await type.chunk(
          { ...ctx(c, attempt), chunkSize: CHUNK },
          cp.checkpoint_cursor,
          cp.checkpoint_state,
        );
        if (failAt !== undefined && attempt === 1 && cp.checkpoint_state.chunks === failAt)
          throw new Error(`injected failure in chunk ${failAt}`);
        await c.query(
          'UPDATE jobs SET checkpoint_cursor = $2, checkpoint_state = $3, processed = processed + $4 WHERE id = $1',
          [id, JSON.stringify(out.cursor), JSON.stringify(out.state), out.processed],
        );
        return out.done;
      });
      if (done) break;
    } catch (err) {
      if (attempt > 1 || !String(err).includes('injected')) throw err;
      await afterFailure?.(id);
      attempt++;
    }
  }
  const { rows } = await pool.query<{ checkpoint_state: ReportState }>(
    'SELECT checkpoint_state FROM jobs WHERE id = $1',
    [id],
  );
  const state = rows[0]?.checkpoint_state;
  if (state === undefined) throw new Error('no state');
  const result = await withTransaction(pool, (c) => type.finish(ctx(c, attempt), state));
  return { id, result, state, chunkCalls };
}

const INPUT: Json = {
  source: 'demo_orders',
  group_by: ['region'],
  metrics: ['quantity', 'amount'],
  formats: ['pdf', 'csv'],
};

describe('report job', () => {
  let type: ReportType;
  let storage: LocalStorage;
  beforeAll(() => {
    storage = new LocalStorage(path.join(dir, 'artifacts'));
    type = createReportJobType({ config, databaseUrl: db.url, storage, pool });
  });

  it('computes the totals SQL computes, writes every row once to the CSV, and prints them in the PDF', async () => {
    const { id, result } = await runReport(type, INPUT);
    const { rows: sql } = await pool.query<{ n: number; q: string; a: string }>(
      'SELECT count(*)::int AS n, sum(quantity)::text AS q, sum(amount)::text AS a FROM demo_orders',
    );
    const expected = sql[0];
    const r = result as {
      rows: number;
      summary: { metrics: Record<string, { sum: string; rows: number }> };
      artifacts: Array<{ name: string; url: string }>;
    };
    expect(r.rows).toBe(ROWS);
    expect(r.summary.metrics.quantity?.sum).toBe(expected?.q);
    expect(r.summary.metrics.amount?.sum).toBe(expected?.a);
    expect(r.artifacts.map((a) => a.name)).toEqual(['report.csv', 'report.pdf']);

    // CSV: the header, then every row once, in key order, byte-equal to the rows' text from SQL.
    const csv = await readFile(path.join(dir, 'artifacts', 'jobs', id, 'report.csv'), 'utf8');
    const lines = csv.split('\r\n');
    expect(lines[0]).toBe('id,created_at,customer,region,product,category,quantity,unit_price,amount,status');
    expect(lines.at(-1)).toBe('');
    const body = lines.slice(1, -1);
    expect(body).toHaveLength(ROWS);
    const ids = body.map((l) => Number(l.split(',')[0]));
    expect(new Set(ids).size).toBe(ROWS);
    expect(ids.every((v, i) => v === i + 1)).toBe(true);
    const { rows: sample } = await pool.query<{ line: string }>(
      `SELECT concat_ws(',', id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), customer, region, product, category, quantity, unit_price, amount, status) AS line
         FROM demo_orders WHERE id IN (1, 777, ${ROWS}) ORDER BY id`,
    );
    expect([body[0], body[776], body[ROWS - 1]]).toEqual(sample.map((s) => s.line));
    // The CSV was written in place: no other file is left in the job's folder.
    expect(await storage.list(`jobs/${id}`)).toEqual(['report.csv', 'report.pdf']);

    // PDF: its text holds the totals and the per-group totals SQL computes, and its page count is printed.
    const pdfFile = path.join(dir, 'artifacts', 'jobs', id, 'report.pdf');
    const { text, pages } = await readPdf(pdfFile);
    const fmt = (s: string) => s.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    const grouped = (s: string) => {
      const [i = '', f] = s.split('.');
      return fmt(i) + (f === undefined ? '' : '.' + f);
    };
    expect(text).toContain(grouped(expected?.a ?? 'x'));
    expect(text).toContain(grouped(expected?.q ?? 'x'));
    expect(text).toMatch(new RegExp(`Rows\\s+${fmt(String(ROWS))}`));
    const { rows: groups } = await pool.query<{ region: string; n: number; a: string }>(
      'SELECT region, count(*)::int AS n, sum(amount)::text AS a FROM demo_orders GROUP BY region',
    );
    for (const g of groups)
      expect(text).toMatch(
        new RegExp(`${g.region}\\s+${fmt(String(g.n))}\\s+[\\d,]+\\s+${grouped(g.a).replaceAll('.', '\\.')}`),
      );
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(text).toContain(`Page ${pages} of ${pages}`);
  });

  it('resumes after a failure in chunk k by redoing only chunk k, with a byte-identical CSV and the same figures', async () => {
    const clean = await runReport(type, INPUT);
    // As if the failed attempt had written more than the redo will (the source changed meanwhile): bytes
    // past the checkpointed end, beyond where the finished CSV ends, which finish must cut off.
    const failed = await runReport(type, INPUT, 2, (id) =>
      appendFile(path.join(dir, 'artifacts', 'jobs', id, 'report.csv'), 'junk\r\n'.repeat(200_000)),
    );
    const chunks = Math.ceil(ROWS / CHUNK);
    expect(clean.chunkCalls).toBe(chunks);
    expect(failed.chunkCalls).toBe(chunks + 1);
    const a = await readFile(path.join(dir, 'artifacts', 'jobs', clean.id, 'report.csv'));
    const b = await readFile(path.join(dir, 'artifacts', 'jobs', failed.id, 'report.csv'));
    expect(b.equals(a)).toBe(true);
    expect(failed.state.agg).toEqual(clean.state.agg);
    expect((failed.result as { summary: unknown }).summary).toEqual((clean.result as { summary: unknown }).summary);
  });

  it('applies filters and groups by several columns, matching SQL', async () => {
    const input = {
      source: 'demo_orders',
      filters: { from: '2024-03-01', to: '2024-09-01T00:00:00Z', status: ['completed', 'shipped'], region: 'Europe' },
      group_by: ['category', 'product'],
      metrics: ['unit_price'],
      formats: ['pdf'],
    };
    const { result, state } = await runReport(type, input);
    const { rows } = await pool.query<{ n: number; s: string; mn: string; mx: string }>(
      `SELECT count(*)::int AS n, sum(unit_price)::text AS s, min(unit_price)::text AS mn, max(unit_price)::text AS mx FROM demo_orders
        WHERE created_at >= '2024-03-01' AND created_at < '2024-09-01T00:00:00Z' AND status IN ('completed', 'shipped') AND region = 'Europe'`,
    );
    const r = result as {
      rows: number;
      artifacts: Array<{ name: string }>;
      summary: { metrics: Record<string, { sum: string; min: string; max: string }> };
    };
    expect(r.rows).toBe(rows[0]?.n);
    expect(r.summary.metrics.unit_price).toMatchObject({ sum: rows[0]?.s, min: rows[0]?.mn, max: rows[0]?.mx });
    expect(r.artifacts.map((a) => a.name)).toEqual(['report.pdf']);
    const { rows: groups } = await pool.query<{ category: string; product: string; n: number }>(
      `SELECT category, product, count(*)::int AS n FROM demo_orders
        WHERE created_at >= '2024-03-01' AND created_at < '2024-09-01T00:00:00Z' AND status IN ('completed', 'shipped') AND region = 'Europe'
        GROUP BY 1, 2`,
    );
    const got = new Map(state.agg.groups.map((g) => [g.values.join('/'), g.count]));
    expect(got).toEqual(new Map(groups.map((g) => [`${g.category}/${g.product}`, g.n])));
  });

  it('keeps the first 500 groups in order of their first row across chunks and sums the rest as "(other groups)", matching SQL', async () => {
    const { state } = await runReport(type, {
      source: 'demo_orders',
      group_by: ['customer'],
      metrics: ['amount'],
      formats: ['pdf'],
    });
    const { rows } = await pool.query<{ customer: string; n: number; a: string }>(
      'SELECT customer, count(*)::int AS n, sum(amount)::text AS a FROM demo_orders GROUP BY customer ORDER BY min(id) LIMIT 500',
    );
    expect(
      state.agg.groups.map((g) => [
        g.values[0],
        g.count,
        toDecimal(g.sums[0] ?? '0', state.agg.metrics[0]?.scale ?? 0),
      ]),
    ).toEqual(rows.map((r) => [r.customer, r.n, r.a]));
    const listed = rows.reduce((n, r) => n + r.n, 0);
    expect(state.agg.other?.count).toBe(ROWS - listed);
  });

  it('with checkpoints off (the benchmark switch) runs every chunk in one step into the same CSV and figures', async () => {
    const off = createReportJobType({
      config: { ...config, report: { ...config.report, checkpoints: false } },
      databaseUrl: db.url,
      storage,
      pool,
    });
    const normal = await runReport(type, INPUT);
    const oneStep = await runReport(off, INPUT);
    expect(oneStep.chunkCalls).toBe(1);
    expect(oneStep.state.chunks).toBe(normal.state.chunks);
    expect(oneStep.state.agg).toEqual(normal.state.agg);
    const a = await readFile(path.join(dir, 'artifacts', 'jobs', normal.id, 'report.csv'));
    const b = await readFile(path.join(dir, 'artifacts', 'jobs', oneStep.id, 'report.csv'));
    expect(b.equals(a)).toBe(true);
  });

  it('writes RFC 4180 CSV through COPY: quotes, commas, line breaks, empty strings and NULLs, CRLF line ends', async () => {
    await pool.query(`CREATE TABLE odd_values (id int PRIMARY KEY, note text, kind text NOT NULL, v numeric)`);
    const notes: Array<string | null> = [
      'plain',
      'a,b',
      'say "hi"',
      'two\nlines',
      'cr\rlf\r\n',
      '',
      null,
      '"',
      'x'.repeat(3),
    ];
    await pool.query(
      `INSERT INTO odd_values SELECT i, n, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END, i * 1.5 FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i)`,
      [notes],
    );
    const { id, state } = await runReport(type, {
      source: 'odd_values',
      group_by: ['kind'],
      metrics: ['v'],
      formats: ['csv'],
    });
    // Built here independently of the job's code: RFC 4180 fields, NULL empty, an empty string "".
    const field = (v: string | null): string =>
      v === null ? '' : v === '' || /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
    const expected =
      [
        'id,note,kind,v',
        ...notes.map((n, i) =>
          [String(i + 1), field(n), (i + 1) % 2 === 0 ? 'even' : 'odd', ((i + 1) * 1.5).toFixed(1)].join(','),
        ),
      ].join('\r\n') + '\r\n';
    expect(await readFile(path.join(dir, 'artifacts', 'jobs', id, 'report.csv'), 'utf8')).toBe(expected);
    expect(state.agg.groups.map((g) => [g.values, g.count])).toEqual([
      [['odd'], 5],
      [['even'], 4],
    ]);
    expect(state.agg.metrics[0]).toMatchObject({ n: 9, sum: '675', scale: 1 });
  });
});

describe('LocalStorage.writeAt', () => {
  it('writes in place at an offset, cuts the object when asked, and refuses to leave a hole', async () => {
    const storage = new LocalStorage(path.join(dir, 'write-at'));
    const read = async () => (await readFile(path.join(dir, 'write-at', 'a', 'b.csv'))).toString();
    await storage.writeAt('a/b.csv', 0, Buffer.from('abc'));
    await storage.writeAt('a/b.csv', 3, Buffer.from('def'));
    expect(await read()).toBe('abcdef');
    await storage.writeAt('a/b.csv', 3, Buffer.from('DE'));
    expect(await read()).toBe('abcDEf');
    await storage.writeAt('a/b.csv', 3, Buffer.from('DE'), { truncate: true });
    expect(await read()).toBe('abcDE');
    await expect(storage.writeAt('a/b.csv', 9, Buffer.from('x'))).rejects.toThrow(/fewer than the offset/);
    await expect(storage.writeAt('a/missing.csv', 1, Buffer.from('x'))).rejects.toThrow();
    expect(await read()).toBe('abcDE');
  });
});

describe('CopyCsvLines', () => {
  it('reads rows from messages split anywhere across socket reads, skips notices, and hands the end back to pg', async () => {
    const msg = (code: string, body: string | Buffer) => {
      const b = Buffer.from(body);
      const out = Buffer.alloc(5 + b.length);
      out.write(code, 0);
      out.writeUInt32BE(b.length + 4, 1);
      b.copy(out, 5);
      return out;
    };
    const rows = Buffer.concat([
      msg('H', Buffer.from([0, 0, 2, 0, 0, 0, 0])),
      msg('d', '1,"a\nb"\n'),
      msg('N', 'a notice\0'),
      msg('d', '2,x\n'),
    ]);
    const end = Buffer.concat([msg('c', ''), msg('C', 'COPY 2\0'), msg('Z', 'I')]);
    const wire = Buffer.concat([rows, end]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const stream = new EventEmitter();
      const pgGot: Buffer[] = [];
      stream.on('data', (b: Buffer) => pgGot.push(b));
      const copy = new CopyCsvLines('COPY (…) TO STDOUT (FORMAT csv)');
      copy.submit({ stream, query: () => undefined } as unknown as Connection);
      stream.emit('data', wire.subarray(0, cut));
      stream.emit('data', wire.subarray(cut));
      copy.handleReadyForQuery();
      expect((await copy.done).lines.toString()).toBe('1,"a\nb"\r\n2,x\r\n');
      expect(Buffer.concat(pgGot).equals(end)).toBe(true);
    }
  });

  it('reads a COPY as CRLF-ended lines, keeps line feeds inside fields, and fails on an error mid-COPY', async () => {
    const c = await pool.connect();
    try {
      const ok = c.query(
        new CopyCsvLines(
          `COPY (SELECT i, 'a' || chr(10) || 'b', NULL, '' FROM generate_series(1, 3) i) TO STDOUT (FORMAT csv)`,
        ),
      );
      expect((await ok.done).lines.toString()).toBe('1,"a\nb",,""\r\n2,"a\nb",,""\r\n3,"a\nb",,""\r\n');
      // More than one block's worth (1 MB).
      const big = c.query(
        new CopyCsvLines(`COPY (SELECT i, repeat('x', 1000) FROM generate_series(1, 3000) i) TO STDOUT (FORMAT csv)`),
      );
      expect((await big.done).lines.toString()).toBe(
        Array.from({ length: 3000 }, (_, i) => `${i + 1},${'x'.repeat(1000)}\r\n`).join(''),
      );
      // The second row fails after the first was sent; the connection stays usable.
      const bad = c.query(
        new CopyCsvLines('COPY (SELECT 1 / (2 - i) FROM generate_series(1, 3) i) TO STDOUT (FORMAT csv)'),
      );
      await expect(bad.done).rejects.toThrow(/division by zero/);
      expect((await c.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      c.release();
    }
  });
});
