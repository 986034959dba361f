/**
 * Job ids: UUIDv7 (RFC 9562), the time of creation in the first 48 bits. Ids made one after another
 * sort one after another, so the b-tree indexes keyed by a job's id (`jobs`' primary key, pg-boss's
 * `(name, id)`) take a batch's new entries on their rightmost pages instead of one random page each.
 */
import { randomFillSync } from 'node:crypto';

const bytes = Buffer.alloc(16);
let lastMs = 0;
/** The 12 bits after the version (rand_a): a counter within one millisecond (RFC 9562, method 1). */
let seq = 0;

export function newJobId(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    randomFillSync(bytes, 6, 2);
    // A random start in the lower half leaves room to count on within the millisecond.
    seq = bytes.readUInt16BE(6) & 0x7ff;
  } else if (++seq > 0xfff) {
    // More ids in one millisecond than the counter holds: borrow the next millisecond.
    lastMs++;
    seq = 0;
  }
  randomFillSync(bytes, 8, 8);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes.writeUInt16BE(0x7000 | seq, 6);
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
