/** RFC 4180 CSV: comma-separated, CRLF line ends, fields quoted when they hold a comma, quote or line break. */

const NEEDS_QUOTES = /[",\r\n]/;

function field(v: string | null | undefined): string {
  if (v === null || v === undefined) return '';
  return NEEDS_QUOTES.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** One CSV line (with its CRLF) of the first `width` values. */
export function csvLine(values: ReadonlyArray<string | null>, width = values.length): string {
  let out = field(values[0]);
  for (let i = 1; i < width; i++) out += ',' + field(values[i]);
  return out + '\r\n';
}

/** The CSV text of a chunk of rows, each cut to its first `width` values (the source's columns). */
export function csvLines(rows: ReadonlyArray<ReadonlyArray<string | null>>, width: number): string {
  let out = '';
  for (const row of rows) out += csvLine(row, width);
  return out;
}
