/**
 * The report's CSV: RFC 4180 (comma-separated, CRLF line ends, a field quoted when it holds a comma, a
 * quote or a line break, quotes doubled), with Postgres's rule for NULL: NULL is an empty field and an
 * empty string is `""`. The rows come from Postgres's `COPY … TO STDOUT (FORMAT csv)`, which writes
 * exactly these fields but ends lines with LF; copy-csv.ts turns those line ends into CRLF. The header is
 * written here by the same rules.
 */

const NEEDS_QUOTES = /[",\r\n]/;

function field(v: string | null | undefined): string {
  if (v === null || v === undefined) return '';
  return v === '' || NEEDS_QUOTES.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** One CSV line (with its CRLF). */
export function csvLine(values: ReadonlyArray<string | null>): string {
  return values.map(field).join(',') + '\r\n';
}
