/**
 * The report's PDF (pdfkit): a first page with what the report is over (source, filters, generated at,
 * row count), the summary figures and a histogram; then a chart of the largest groups and the per-group
 * table, which continues across pages with its header repeated; page numbers on every page. Everything
 * is drawn from the aggregates, whose size is bounded (MAX_GROUPS), so the document's size is too.
 */
import PDFDocument from 'pdfkit';
import { meanOf, toDecimal, type Aggregates, type GroupAgg } from './aggregate.ts';

export interface PdfMeta {
  title: string;
  source: string;
  filters: string;
  groupBy: string[];
  metrics: string[];
  generatedAt: Date;
  jobId: string;
}

const MARGIN = 50;
const ROW_HEIGHT = 16;
const INK = '#1f2937';
const MUTED = '#6b7280';
const ACCENT = '#2563eb';
const RULE = '#d1d5db';
/** Groups drawn in the bar chart; the table lists them all. */
const CHART_GROUPS = 12;
/** Room kept at the bottom of each page for its number. */
const FOOTER = 30;

/** 1234567.5 → "1,234,567.5", keeping every digit of the text. */
export function formatNumber(text: string): string {
  const neg = text.startsWith('-');
  const [int = '', frac] = (neg ? text.slice(1) : text).split('.');
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${neg ? '-' : ''}${grouped}${frac === undefined ? '' : '.' + frac}`;
}

function groupLabel(g: GroupAgg): string {
  return g.values.map((v) => v ?? '(null)').join(' / ');
}

type Doc = PDFKit.PDFDocument;

function bottom(doc: Doc): number {
  return doc.page.height - MARGIN - FOOTER;
}

interface TableSpec {
  headers: string[];
  widths: number[];
  /** Columns aligned right (numbers). */
  right: boolean[];
}

function drawRow(doc: Doc, spec: TableSpec, cells: string[], y: number, bold: boolean): void {
  let x = MARGIN;
  doc
    .font(bold ? 'Helvetica-Bold' : 'Helvetica')
    .fontSize(8)
    .fillColor(INK);
  cells.forEach((cell, i) => {
    const w = spec.widths[i] ?? 60;
    doc.text(cell, x + 3, y + 4, {
      width: w - 6,
      align: spec.right[i] === true ? 'right' : 'left',
      lineBreak: false,
      ellipsis: true,
      height: ROW_HEIGHT,
    });
    x += w;
  });
}

function drawHeader(doc: Doc, spec: TableSpec, y: number): number {
  const width = spec.widths.reduce((a, b) => a + b, 0);
  doc.rect(MARGIN, y, width, ROW_HEIGHT).fill('#e5e7eb');
  drawRow(doc, spec, spec.headers, y, true);
  return y + ROW_HEIGHT;
}

/** A table that continues on new pages, repeating its header; the last row may be a bold total. */
function drawTable(doc: Doc, spec: TableSpec, rows: string[][], total: string[] | undefined, caption: string): void {
  let y = drawHeader(doc, spec, doc.y);
  const width = spec.widths.reduce((a, b) => a + b, 0);
  const all = total === undefined ? rows : [...rows, total];
  all.forEach((cells, i) => {
    if (y + ROW_HEIGHT > bottom(doc)) {
      doc.addPage();
      doc.font('Helvetica').fontSize(9).fillColor(MUTED).text(`${caption} (continued)`, MARGIN, MARGIN);
      y = drawHeader(doc, spec, MARGIN + 16);
    }
    const isTotal = total !== undefined && i === all.length - 1;
    drawRow(doc, spec, cells, y, isTotal);
    y += ROW_HEIGHT;
    doc
      .moveTo(MARGIN, y)
      .lineTo(MARGIN + width, y)
      .lineWidth(isTotal ? 1 : 0.5)
      .strokeColor(RULE)
      .stroke();
  });
  doc.y = y + 12;
  doc.x = MARGIN;
}

/** Vertical bars with a labelled axis: the histogram. */
function drawHistogram(doc: Doc, agg: Aggregates, x: number, y: number, w: number, h: number): void {
  const hist = agg.histogram;
  if (hist === null) return;
  const max = Math.max(1, ...hist.counts);
  const bins = hist.counts.length;
  const bw = w / bins;
  doc
    .lineWidth(0.5)
    .strokeColor(MUTED)
    .moveTo(x, y)
    .lineTo(x, y + h)
    .lineTo(x + w, y + h)
    .stroke();
  hist.counts.forEach((c, i) => {
    const bh = (c / max) * (h - 4);
    doc.rect(x + i * bw + 1, y + h - bh, Math.max(0.5, bw - 2), bh).fill(ACCENT);
  });
  const label = (v: number): string =>
    hist.kind === 'time'
      ? new Date(v * 1000).toISOString().slice(0, 10)
      : formatNumber(String(Math.round(v * 100) / 100));
  doc.font('Helvetica').fontSize(7).fillColor(MUTED);
  doc.text(label(hist.lo), x, y + h + 3, { width: 80, lineBreak: false });
  doc.text(label((hist.lo + hist.hi) / 2), x + w / 2 - 40, y + h + 3, { width: 80, align: 'center', lineBreak: false });
  doc.text(label(hist.hi), x + w - 80, y + h + 3, { width: 80, align: 'right', lineBreak: false });
  doc.text(formatNumber(String(max)), x - 45, y - 3, { width: 40, align: 'right', lineBreak: false });
  doc.text('0', x - 45, y + h - 4, { width: 40, align: 'right', lineBreak: false });
}

/** Horizontal bars of the first metric's sum per group (largest first). */
function drawGroupBars(doc: Doc, agg: Aggregates, metric: string, x: number, y: number, w: number): number {
  const scale = agg.metrics[0]?.scale ?? 0;
  const top = [...agg.groups]
    .map((g) => ({ g, v: BigInt(g.sums[0] ?? '0') }))
    .sort((a, b) => (a.v === b.v ? 0 : a.v > b.v ? -1 : 1))
    .slice(0, CHART_GROUPS);
  const max = top.reduce((m, t) => (t.v > m ? t.v : m), 1n);
  const labelW = 120;
  const valueW = 90;
  const barMax = w - labelW - valueW;
  top.forEach((t, i) => {
    const rowY = y + i * 18;
    const bw = (Number((t.v * 1_000_000n) / max) / 1_000_000) * barMax;
    doc
      .font('Helvetica')
      .fontSize(8)
      .fillColor(INK)
      .text(groupLabel(t.g), x, rowY + 3, { width: labelW - 6, lineBreak: false, ellipsis: true });
    doc.rect(x + labelW, rowY, Math.max(0.5, bw), 12).fill(ACCENT);
    doc
      .font('Helvetica')
      .fontSize(8)
      .fillColor(INK)
      .text(formatNumber(toDecimal(t.v, scale)), x + labelW + Math.max(0.5, bw) + 4, rowY + 3, {
        width: valueW,
        lineBreak: false,
      });
  });
  doc
    .font('Helvetica')
    .fontSize(7)
    .fillColor(MUTED)
    .text(`sum of ${metric}, largest ${top.length} of ${agg.groups.length} groups`, x, y + top.length * 18 + 2, {
      lineBreak: false,
    });
  return y + top.length * 18 + 16;
}

function heading(doc: Doc, text: string): void {
  doc.font('Helvetica-Bold').fontSize(13).fillColor(INK).text(text, MARGIN, doc.y);
  doc.moveDown(0.4);
}

/** Draws the whole report and ends the document; read it as a stream (it is a Readable). */
export function renderPdf(meta: PdfMeta, agg: Aggregates): Doc {
  const doc = new PDFDocument({
    size: 'A4',
    margin: MARGIN,
    bufferPages: true,
    info: {
      Title: meta.title,
      Author: 'longhaul',
      Subject: `Report over ${meta.source}`,
      CreationDate: meta.generatedAt,
    },
  });
  const contentWidth = doc.page.width - 2 * MARGIN;

  // Title block.
  doc.font('Helvetica-Bold').fontSize(22).fillColor(INK).text(meta.title, MARGIN, MARGIN);
  doc.moveDown(0.3);
  doc.rect(MARGIN, doc.y, contentWidth, 2).fill(ACCENT);
  doc.moveDown(0.8);
  const facts: Array<[string, string]> = [
    ['Source', meta.source],
    ['Filters', meta.filters],
    ['Grouped by', meta.groupBy.join(', ')],
    ['Metrics', meta.metrics.join(', ')],
    ['Rows', formatNumber(String(agg.rows))],
    ['Generated at', meta.generatedAt.toISOString()],
    ['Job', meta.jobId],
  ];
  for (const [k, v] of facts) {
    const y = doc.y;
    doc.font('Helvetica-Bold').fontSize(10).fillColor(MUTED).text(k, MARGIN, y, { width: 100 });
    doc
      .font('Helvetica')
      .fontSize(10)
      .fillColor(INK)
      .text(v, MARGIN + 100, y, { width: contentWidth - 100 });
    doc.moveDown(0.2);
  }
  doc.moveDown(1);

  // Summary figures.
  heading(doc, 'Summary');
  const summarySpec: TableSpec = {
    headers: ['Metric', 'Rows', 'Sum', 'Mean', 'Min', 'Max'],
    widths: [85, 70, 110, 75, 75, 80],
    right: [false, true, true, true, true, true],
  };
  const summaryRows = meta.metrics.map((name, j) => {
    const st = agg.metrics[j];
    if (st === undefined) return [name, '', '', '', '', ''];
    const dec = (v: string | null): string => (v === null ? '–' : formatNumber(toDecimal(v, st.scale)));
    return [
      name,
      formatNumber(String(st.n)),
      dec(st.sum),
      formatNumber(meanOf(st, 2) ?? '–'),
      dec(st.min),
      dec(st.max),
    ];
  });
  drawTable(doc, summarySpec, summaryRows, undefined, 'Summary');

  // Histogram.
  if (agg.histogram !== null) {
    heading(
      doc,
      agg.histogram.kind === 'time'
        ? `Rows over time (${agg.histogram.column})`
        : `Distribution of ${agg.histogram.column}`,
    );
    const chartH = 150;
    if (doc.y + chartH + 20 > bottom(doc)) doc.addPage();
    const y = doc.y;
    drawHistogram(doc, agg, MARGIN + 50, y, contentWidth - 50, chartH);
    doc.y = y + chartH + 24;
  }

  // Groups: chart, then the full table.
  doc.addPage();
  heading(doc, `Largest groups by ${meta.metrics[0] ?? 'rows'}`);
  if (agg.groups.length > 0 && meta.metrics.length > 0)
    doc.y = drawGroupBars(doc, agg, meta.metrics[0] ?? '', MARGIN, doc.y, contentWidth);
  doc.moveDown(1);
  heading(doc, `Totals by ${meta.groupBy.join(', ')}`);
  const groupCols = meta.groupBy.length;
  const numericCols = 1 + meta.metrics.length;
  const groupW = Math.min(110, (contentWidth * 0.45) / groupCols);
  const numW = (contentWidth - groupW * groupCols) / numericCols;
  const spec: TableSpec = {
    headers: [...meta.groupBy, 'Rows', ...meta.metrics.map((m) => `Sum of ${m}`)],
    widths: [...Array<number>(groupCols).fill(groupW), ...Array<number>(numericCols).fill(numW)],
    right: [...Array<boolean>(groupCols).fill(false), ...Array<boolean>(numericCols).fill(true)],
  };
  const collator = new Intl.Collator('en', { numeric: true });
  const sorted = [...agg.groups].sort((a, b) => {
    for (let i = 0; i < a.values.length; i++) {
      const x = a.values[i] ?? null;
      const y = b.values[i] ?? null;
      if (x === y) continue;
      if (x === null) return 1;
      if (y === null) return -1;
      return collator.compare(x, y);
    }
    return 0;
  });
  const cellsOf = (g: GroupAgg, label: string[]): string[] => [
    ...label,
    formatNumber(String(g.count)),
    ...meta.metrics.map((_, j) => formatNumber(toDecimal(g.sums[j] ?? '0', agg.metrics[j]?.scale ?? 0))),
  ];
  const rows = sorted.map((g) =>
    cellsOf(
      g,
      g.values.map((v) => v ?? '(null)'),
    ),
  );
  if (agg.other !== null) rows.push(cellsOf(agg.other, ['(other groups)', ...Array<string>(groupCols - 1).fill('')]));
  const total = [
    'Total',
    ...Array<string>(groupCols - 1).fill(''),
    formatNumber(String(agg.rows)),
    ...agg.metrics.map((st) => formatNumber(toDecimal(st.sum, st.scale))),
  ];
  drawTable(doc, spec, rows, total, `Totals by ${meta.groupBy.join(', ')}`);
  if (agg.other !== null) {
    doc
      .font('Helvetica')
      .fontSize(8)
      .fillColor(MUTED)
      .text(
        `Only the first ${agg.groups.length} distinct groups are listed; the rest are summed in "(other groups)".`,
        MARGIN,
        doc.y,
      );
  }

  // Page numbers, drawn last when the page count is known.
  const range = doc.bufferedPageRange();
  for (let i = range.start; i < range.start + range.count; i++) {
    doc.switchToPage(i);
    const y = doc.page.height - MARGIN;
    doc.page.margins.bottom = 0;
    doc
      .font('Helvetica')
      .fontSize(8)
      .fillColor(MUTED)
      .text(`Page ${i + 1} of ${range.count}`, MARGIN, y, { width: contentWidth, align: 'center', lineBreak: false });
  }
  doc.end();
  return doc;
}
