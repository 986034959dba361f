/** Job ids (src/jobs/job-id.ts): UUIDv7, ascending in the order they are made, within a millisecond too. */
import { expect, it } from 'vitest';
import { newJobId } from '../src/jobs/job-id.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

it('carries the millisecond it was made in its first 48 bits', () => {
  const id = newJobId(Date.UTC(2030, 0, 1));
  expect(id).toMatch(UUID_V7);
  expect(parseInt(id.replaceAll('-', '').slice(0, 12), 16)).toBeGreaterThanOrEqual(Date.UTC(2030, 0, 1));
});

it('ascends in the order made, past the counter of one millisecond and when the clock steps back', () => {
  const now = Date.UTC(2031, 0, 1);
  const ids = [...Array.from({ length: 10_000 }, () => newJobId(now)), newJobId(now - 5), newJobId(now + 60_000)];
  expect(ids.every((id) => UUID_V7.test(id))).toBe(true);
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(ids);
});
