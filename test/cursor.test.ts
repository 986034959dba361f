/** Page cursors: what the list endpoints hand out reads back exactly, and anything else is a 400, never a 500. */
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../src/api/cursor.ts';
import { ApiError } from '../src/api/errors.ts';

const ID = '0b7e3f4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b';
const raw = (text: string) => Buffer.from(text).toString('base64url');

function refusal(cursor: string): unknown {
  try {
    decodeCursor(cursor);
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('page cursors', () => {
  it('read back the position they were made from', () => {
    const pos = { createdAt: '2026-01-02T03:04:05.123456Z', id: ID };
    expect(decodeCursor(encodeCursor(pos))).toEqual(pos);
  });

  it('are base64url of "created_at|id", so a cursor from an earlier version still reads', () => {
    expect(encodeCursor({ createdAt: '2026-01-02T03:04:05.123456Z', id: ID })).toBe(
      raw(`2026-01-02T03:04:05.123456Z|${ID}`),
    );
    expect(decodeCursor(raw(`2024-02-29T23:59:59.999999Z|${ID}`))).toEqual({
      createdAt: '2024-02-29T23:59:59.999999Z',
      id: ID,
    });
  });

  it.each([
    ['garbage', 'not a cursor'],
    ['an empty cursor', ''],
    ['no id', raw('2026-01-02T03:04:05.123456Z|')],
    ['no timestamp', raw(`|${ID}`)],
    ['milliseconds only', raw(`2026-01-02T03:04:05.123Z|${ID}`)],
    ['no time zone', raw(`2026-01-02T03:04:05.123456|${ID}`)],
    ['a day that does not exist', raw(`2026-02-30T03:04:05.123456Z|${ID}`)],
    ['a leap day in a common year', raw(`2025-02-29T00:00:00.000000Z|${ID}`)],
    ['an hour that does not exist', raw(`2026-01-02T24:30:00.000000Z|${ID}`)],
    ['year 0000', raw(`0000-01-01T00:00:00.000000Z|${ID}`)],
    ['an id that is no UUID', raw('2026-01-02T03:04:05.123456Z|------------------------------------')],
    ['an id of the wrong shape', raw('2026-01-02T03:04:05.123456Z|0b7e3f4a1c2d-4e5f-8a9b-0c1d-2e3f4a5b')],
    ['an upper-case id', raw(`2026-01-02T03:04:05.123456Z|${ID.toUpperCase()}`)],
    ['text before', raw(`x2026-01-02T03:04:05.123456Z|${ID}`)],
    ['text after', raw(`2026-01-02T03:04:05.123456Z|${ID}x`)],
    ['another separator', raw(`2026-01-02T03:04:05.123456Z,${ID}`)],
  ])('refuses %s with a 400 naming the cursor', (_what, cursor) => {
    const err = refusal(cursor);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      code: 'bad-request',
      detail: 'the cursor is not one this API returned',
      errors: [{ field: 'cursor', message: 'invalid cursor' }],
    });
  });
});
