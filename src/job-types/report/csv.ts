/**
 * The report's CSV: RFC 4180 (comma-separated, CRLF line ends, a field quoted when it holds a comma, a
 * quote or a line break, quotes doubled), with Postgres's rule for NULL: NULL is an empty field and an
 * empty string is `""`. The rows come from Postgres's `COPY … TO STDOUT (FORMAT csv)`, which writes
 * exactly these fields but ends lines with LF; `toCrlf` turns those line ends into CRLF. The header is
 * written here by the same rules.
 */

const NEEDS_QUOTES = /[",\r\n]/;
const LF = 0x0a;
const QUOTE = 0x22;
const CRLF = Buffer.from('\r\n');

function field(v: string | null | undefined): string {
  if (v === null || v === undefined) return '';
  return v === '' || NEEDS_QUOTES.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** One CSV line (with its CRLF). */
export function csvLine(values: ReadonlyArray<string | null>): string {
  return values.map(field).join(',') + '\r\n';
}

/**
 * COPY's CSV output with every line end (an LF outside quotes) turned into CRLF; an LF inside a quoted
 * field is data and stays. `lf` must hold whole lines (a whole COPY output).
 */
export function toCrlf(lf: Buffer): Buffer {
  // Line ends first, so the output is allocated once.
  const ends: number[] = [];
  let quoted = false;
  let q = lf.indexOf(QUOTE);
  for (let nl = lf.indexOf(LF); nl >= 0; nl = lf.indexOf(LF, nl + 1)) {
    // Every quote before this LF flips the state ("" inside a field flips it twice).
    for (; q >= 0 && q < nl; q = lf.indexOf(QUOTE, q + 1)) quoted = !quoted;
    if (!quoted) ends.push(nl);
  }
  const out = Buffer.allocUnsafe(lf.length + ends.length);
  let from = 0;
  let at = 0;
  for (const nl of ends) {
    at += lf.copy(out, at, from, nl);
    at += CRLF.copy(out, at);
    from = nl + 1;
  }
  lf.copy(out, at, from);
  return out;
}
