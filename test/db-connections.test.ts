/**
 * Connections that break, against a real Postgres. A pool's connection killed while checked out (a
 * transaction between statements, an idle connection) fails its caller's queries, not the process.
 * The process's one LISTEN connection (src/db/listener.ts): notifications reach
 * the subscribers of their channel; when the connection is killed, and while the database refuses
 * connections, it comes back by itself, listens to every channel again and calls each subscriber's
 * onConnect; the outage is logged once when it starts and once when it ends, whatever the attempts.
 */
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { jittered, PgListener, type Subscriber } from '../src/db/listener.ts';
import { createPool, isConnectionError } from '../src/db/pool.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { waitFor } from './support/receiver.ts';

let db: TestDatabase;
let admin: pg.Client;
beforeAll(async () => {
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: inject('serverUrl') });
  await admin.connect();
});
afterAll(async () => {
  await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`).catch(() => undefined);
  await admin.end();
  await db.drop();
});

function recorder(): Subscriber & { got: string[]; connects: number } {
  const r = {
    got: [] as string[],
    connects: 0,
    onNotification: (channel: string, payload: string) => void r.got.push(`${channel}:${payload}`),
    onConnect: () => void r.connects++,
  };
  return r;
}

async function notify(channel: string, payload: string): Promise<void> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    await c.query('SELECT pg_notify($1, $2)', [channel, payload]);
  } finally {
    await c.end();
  }
}

async function kill(applicationName: string): Promise<void> {
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`,
    [db.name, applicationName],
  );
}
const killListener = () => kill('longhaul-listen');

it('fails the queries of a pooled connection that breaks while checked out, without an unhandled error event', async () => {
  const pool = createPool(db.url, 2, 'test-checked-out');
  const other = createPool(db.url, 2, 'test-idle');
  try {
    const client = await pool.connect();
    await client.query('BEGIN');
    await other.query('SELECT 1');
    const idle = await other.connect();
    // Killed between statements: the 'error' event comes while no query runs on the connections.
    await kill('test-checked-out');
    await kill('test-idle');
    const broke = await waitFor('the break noticed', async () => {
      const err = await client.query('SELECT 1').then(
        () => undefined,
        (e: unknown) => e,
      );
      return err !== undefined && isConnectionError(err) ? (err as Error) : undefined;
    });
    const err = await idle.query('SELECT 1').catch((e: unknown) => e);
    expect(isConnectionError(err)).toBe(true);
    // Released with the error, as withTransaction and pg's pool.query do: a backend being terminated can
    // answer with its error before its socket closes, while pg still counts the connection as live.
    client.release(broke);
    idle.release(err as Error);
    // Broken connections are discarded on release: the pools answer again.
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect((await other.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  } finally {
    await pool.end();
    await other.end();
  }
});

it('waits half its backoff plus a random part of the other half', () => {
  expect(jittered(1000, () => 0)).toBe(500);
  expect(jittered(1000, () => 0.5)).toBe(750);
  expect(jittered(400, () => 0.999)).toBeCloseTo(399.8);
});

it('delivers by channel, survives its connection being killed and the database refusing connections, and logs the outage once', async () => {
  const lines: Array<{ msg: string; level: number }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l !== '') lines.push(JSON.parse(l) as { msg: string; level: number });
      done();
    },
  });
  const listener = new PgListener({ databaseUrl: db.url, log: createLogger('debug', sink) });
  const a = recorder();
  const b = recorder();
  await listener.subscribe(['chan_a'], a);
  await listener.start();
  expect(listener.connected).toBe(true);
  expect(a.connects).toBe(1);
  await listener.subscribe(['chan_b', 'chan_a'], b);
  expect(b.connects).toBe(1);
  try {
    await notify('chan_a', '1');
    await notify('chan_b', '2');
    await waitFor('both notifications', () => a.got.length === 1 && b.got.length === 2);
    expect(a.got).toEqual(['chan_a:1']);
    expect(b.got.sort()).toEqual(['chan_a:1', 'chan_b:2']);

    // Its backend killed: back by itself, every channel listened to again, each subscriber told.
    await killListener();
    await waitFor('reconnection', () => a.connects === 2 && b.connects === 2 && listener.connected);
    await notify('chan_b', '3');
    await waitFor('a notification after reconnecting', () => b.got.includes('chan_b:3'));

    // The database refuses connections for a while: many attempts, one line when it starts, one when it ends.
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    await killListener();
    await waitFor('the connection lost', () => !listener.connected);
    // Several attempts refused while the database refuses connections (the listener logs each at debug).
    const retries = () => lines.filter((l) => l.msg === 'database connection: retrying').length;
    const before = retries();
    await waitFor('three refused attempts', () => retries() >= before + 3, 10_000);
    expect(listener.connected).toBe(false);
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    await waitFor('reconnection after the outage', () => listener.connected && a.connects === 3);
    const lost = lines.filter((l) => l.msg.startsWith('database connection lost'));
    const restored = lines.filter((l) => l.msg === 'database connection restored');
    expect(lost).toHaveLength(2);
    expect(restored).toHaveLength(2);
    expect((restored[1] as { attempts?: number }).attempts).toBeGreaterThan(2);

    // Unsubscribed: a channel no one follows any more is not delivered.
    const c = recorder();
    const unsubscribe = await listener.subscribe(['chan_c'], c);
    await unsubscribe();
    await notify('chan_c', '4');
    await notify('chan_a', '5');
    await waitFor('the last notification', () => b.got.includes('chan_a:5'));
    expect(c.got).toEqual([]);
  } finally {
    await listener.stop();
  }
  expect(listener.connected).toBe(false);
});
