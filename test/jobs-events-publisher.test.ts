/**
 * Announcing committed job events (src/jobs/events-publisher.ts): at once when idle, and those that come
 * less than the interval after the last statement together in the next one, each job's highest seq only.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { JobEventsPublisher } from '../src/jobs/events-publisher.ts';
import { JOB_EVENTS_CHANNEL } from '../src/jobs/repository.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;
let listener: pg.Client;
const heard: string[] = [];
let onHeard: () => void = () => undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  listener.on('notification', (n) => {
    heard.push(n.payload ?? '');
    onHeard();
  });
  await listener.query(`LISTEN ${JOB_EVENTS_CHANNEL}`);
});
afterAll(async () => {
  await listener.end();
  await pool.end();
  await db.drop();
});

/** Resolves once `payload` has been heard. */
function heardWhen(payload: string): Promise<void> {
  return new Promise((resolve) => {
    onHeard = () => heard.includes(payload) && resolve();
    onHeard();
  });
}

it('sends the first announcement at once and those soon after it together, at the interval', async () => {
  const statements: string[][] = [];
  const counted = {
    query: (text: string, values: [string, string[]]) => {
      statements.push(values[1]);
      return pool.query(text, values);
    },
  } as unknown as pg.Pool;
  // An interval far longer than the steps below take, so that what waits for it shows.
  const publisher = new JobEventsPublisher(counted, createLogger('silent'), 1_000);
  const job = '0190b3a0-0000-7000-8000-000000000001';

  publisher.publish(job, 1);
  await heardWhen(`${job}:1`);
  publisher.publish(job, 2);
  publisher.publish(job, 3);
  // Without the interval the second statement would have gone on the next turn of the event loop.
  await new Promise((resolve) => setImmediate(resolve));
  await pool.query('SELECT 1');
  expect(statements).toEqual([[`${job}:1`]]);

  await publisher.flush();
  await heardWhen(`${job}:3`);
  expect(statements).toEqual([[`${job}:1`], [`${job}:3`]]);
  expect(heard).toEqual([`${job}:1`, `${job}:3`]);
});
