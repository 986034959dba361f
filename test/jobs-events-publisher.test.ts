/**
 * Announcing committed job events (src/jobs/events-publisher.ts): at once when idle, and those that come
 * less than the interval after the last statement together in the next one, each job's highest seq only;
 * given the process's LISTEN connection, only once a hub says it follows jobs, and until three of its
 * heartbeats are missed.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PgListener } from '../src/db/listener.ts';
import { FOLLOWED_FOR_MS, FOLLOWERS_SQL, JobEventsPublisher, SKIPPED_KEEP_MS } from '../src/jobs/events-publisher.ts';
import { JOB_EVENTS_CHANNEL, STREAM_FOLLOWERS_CHANNEL } from '../src/jobs/repository.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let db: TestDatabase;
let pool: pg.Pool;
let listener: pg.Client;
const heard: string[] = [];
let onHeard: () => void = () => undefined;
/** What was said on the followers' channel. */
const said: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  listener.on('notification', (n) => {
    if (n.channel === STREAM_FOLLOWERS_CHANNEL) said.push(n.payload ?? '');
    else heard.push(n.payload ?? '');
    onHeard();
  });
  await listener.query(`LISTEN ${JOB_EVENTS_CHANNEL}; LISTEN ${STREAM_FOLLOWERS_CHANNEL}`);
});
afterAll(async () => {
  await listener.end();
  await pool.end();
  await db.drop();
});

/** The pool, recording the announcements of each announcing statement (not what is said to the hubs). */
function countingPool(): { statements: string[][]; counted: pg.Pool } {
  const statements: string[][] = [];
  const counted = {
    query: (text: string, values: [string, string[]]) => {
      if (text !== FOLLOWERS_SQL) statements.push(values[1]);
      return pool.query(text, values);
    },
  } as unknown as pg.Pool;
  return { statements, counted };
}

/** Resolves once `check` holds, looked at after each notification heard. */
function notified(check: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    onHeard = () => check() && resolve();
    onHeard();
  });
}

/** Resolves once `payload` has been heard. */
const heardWhen = (payload: string) => notified(() => heard.includes(payload));

/** How many times `ask` was said on the followers' channel. */
const asks = () => said.filter((w) => w === 'ask').length;

it('sends the first announcement at once and those soon after it together, at the interval', async () => {
  const { statements, counted } = countingPool();
  // An interval far longer than the steps below take, so that what waits for it shows.
  const publisher = new JobEventsPublisher(counted, createLogger('silent'), { intervalMs: 1_000 });
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

it('announces only once a hub follows jobs: it asks, then sends what it kept meanwhile, then each at once', async () => {
  const log = createLogger('silent');
  const own = new PgListener({ databaseUrl: db.url, log });
  await own.start();
  const { statements, counted } = countingPool();
  const publisher = new JobEventsPublisher(counted, log, { intervalMs: 0, listener: own });
  const [a, b] = ['0190b3a0-0000-7000-8000-00000000000a', '0190b3a0-0000-7000-8000-00000000000b'];
  try {
    await publisher.start();
    await notified(() => asks() > 0);
    publisher.publish(a, 1, 2);
    publisher.publish(b, 1);
    publisher.publish(a, 3);
    await publisher.flush();
    expect(statements).toEqual([]);

    // A hub follows: what was kept goes, each job's newest seq.
    await pool.query(FOLLOWERS_SQL, ['follow']);
    await heardWhen(`${b}:1`);
    await heardWhen(`${a}:3`);
    publisher.publish(b, 2);
    await heardWhen(`${b}:2`);
    expect(statements.flat().sort()).toEqual([`${a}:3`, `${b}:1`, `${b}:2`]);
  } finally {
    await publisher.stop();
    await own.stop();
  }
});

it('stops announcing three heartbeats after the last follow, and keeps what it skipped only a while', async () => {
  const log = createLogger('silent');
  const own = new PgListener({ databaseUrl: db.url, log });
  await own.start();
  const { statements, counted } = countingPool();
  // The publisher's windows run on this clock, moved by the test.
  let clock = 0;
  const publisher = new JobEventsPublisher(counted, log, { intervalMs: 0, listener: own, now: () => clock });
  const [c, d, e] = [
    '0190b3a0-0000-7000-8000-00000000000c',
    '0190b3a0-0000-7000-8000-00000000000d',
    '0190b3a0-0000-7000-8000-00000000000e',
  ];
  try {
    const asked = asks();
    await publisher.start();
    await notified(() => asks() > asked);
    await pool.query(FOLLOWERS_SQL, ['follow']);
    // Announced at once if the follow was heard first, or when it is heard (kept until then).
    publisher.publish(c, 1);
    await heardWhen(`${c}:1`);
    clock = FOLLOWED_FOR_MS - 1;
    publisher.publish(c, 2);
    await heardWhen(`${c}:2`);

    // Three heartbeats without a follow: kept, not announced.
    clock = FOLLOWED_FOR_MS;
    publisher.publish(d, 1);
    // Later than the keeping window: d is dropped, e is kept.
    clock = FOLLOWED_FOR_MS + SKIPPED_KEEP_MS;
    publisher.publish(e, 1);
    await publisher.flush();
    expect(statements.flat()).toEqual([`${c}:1`, `${c}:2`]);

    // A hub follows again: what is still kept goes.
    await pool.query(FOLLOWERS_SQL, ['follow']);
    await heardWhen(`${e}:1`);
    await publisher.flush();
    expect(statements.flat()).toEqual([`${c}:1`, `${c}:2`, `${e}:1`]);
    expect(heard).not.toContain(`${d}:1`);
  } finally {
    await publisher.stop();
    await own.stop();
  }
});
