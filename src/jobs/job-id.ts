/**
 * Job ids: UUIDv7 (RFC 9562), the time of creation in the first 48 bits. Ids made one after another
 * sort one after another, so the b-tree indexes keyed by a job's id (`jobs`' primary key, pg-boss's
 * `(name, id)`) take a batch's new entries on their rightmost pages instead of one random page each.
 */
import { randomFillSync } from 'node:crypto';

/** Random bytes drawn ahead, as crypto.randomUUID() does: one call to the generator per many ids. */
const entropy = Buffer.alloc(4096);
let drawn = entropy.length;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
let lastMs = 0;
/** The id's first 13 characters, the millisecond `lastMs`. */
let prefix = '';
/** The 12 bits after the version (rand_a): a counter within one millisecond (RFC 9562, method 1). */
let seq = 0;

function random(n: number): number {
  if (drawn + n > entropy.length) {
    randomFillSync(entropy);
    drawn = 0;
  }
  drawn += n;
  return drawn - n;
}

export function newJobId(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    // A random start in the lower half leaves room to count on within the millisecond.
    seq = entropy.readUInt16BE(random(2)) & 0x7ff;
  } else if (++seq > 0xfff) {
    // More ids in one millisecond than the counter holds: borrow the next millisecond.
    lastMs++;
    seq = 0;
  } else {
    return next();
  }
  const ms = lastMs.toString(16).padStart(12, '0');
  prefix = `${ms.slice(0, 8)}-${ms.slice(8)}-7`;
  return next();
}

function next(): string {
  const at = random(8);
  const r = (i: number) => HEX[entropy[at + i] ?? 0] ?? '00';
  const variant = HEX[0x80 | ((entropy[at] ?? 0) & 0x3f)] ?? '80';
  return `${prefix}${seq.toString(16).padStart(3, '0')}-${variant}${r(1)}-${r(2)}${r(3)}${r(4)}${r(5)}${r(6)}${r(7)}`;
}
