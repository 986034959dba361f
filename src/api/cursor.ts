/**
 * Page cursors of the list endpoints: an opaque base64url of the last row's `created_at` (as Postgres
 * prints it, microseconds included) and id. A cursor this API did not hand out is a 400, never a 500.
 */
import { ApiError } from './errors.ts';

export function encodeCursor(pos: { createdAt: string; id: string }): string {
  return Buffer.from(`${pos.createdAt}|${pos.id}`).toString('base64url');
}

/**
 * Whether a cursor's `YYYY-MM-DDTHH:MM:SS.ffffffZ` names a real instant Postgres's timestamptz takes:
 * Date.parse rolls 30 February over into March, and takes year 0000, which Postgres refuses.
 */
function isTimestamptz(text: string): boolean {
  const ms = Date.parse(text);
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 19) === text.slice(0, 19) && !text.startsWith('0000');
}

const CURSOR =
  /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

export function decodeCursor(cursor: string): { createdAt: string; id: string } {
  const m = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (m === null || m[1] === undefined || m[2] === undefined || !isTimestamptz(m[1])) {
    throw new ApiError('bad-request', 'the cursor is not one this API returned', {
      errors: [{ field: 'cursor', message: 'invalid cursor' }],
    });
  }
  return { createdAt: m[1], id: m[2] };
}
