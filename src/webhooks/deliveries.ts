/**
 * Deliveries as the API serves them, each with its attempt log: a job's, a page of a tenant's, one by id,
 * and the replay of one finished delivery. Each answers what the caller maps to a response or a problem
 * (no such job or delivery, a delivery still pending) and changes nothing when it refuses.
 */
import type { Queryable } from '../db/pool.ts';
import {
  attemptsOf,
  deliveriesOfJob,
  getDelivery,
  listDeliveries,
  redeliver,
  type AttemptRow,
  type DeliveryFilter,
  type DeliveryRow,
} from './store.ts';

export interface DeliveryWithAttempts {
  delivery: DeliveryRow;
  attempts: AttemptRow[];
}

async function withAttempts(db: Queryable, rows: DeliveryRow[]): Promise<DeliveryWithAttempts[]> {
  const attempts = await attemptsOf(
    db,
    rows.map((r) => r.id),
  );
  return rows.map((delivery) => ({ delivery, attempts: attempts.get(delivery.id) ?? [] }));
}

/** A job's deliveries, oldest first; undefined when the tenant has no such job. */
export async function jobDeliveries(
  db: Queryable,
  tenantId: string,
  jobId: string,
): Promise<DeliveryWithAttempts[] | undefined> {
  const rows = await deliveriesOfJob(db, tenantId, jobId);
  return rows === undefined ? undefined : withAttempts(db, rows);
}

/** A page of the tenant's deliveries, newest first, and the keyset position of the next page. */
export async function deliveryPage(
  db: Queryable,
  tenantId: string,
  filter: DeliveryFilter,
): Promise<{ deliveries: DeliveryWithAttempts[]; next: { createdAt: string; id: string } | null }> {
  const page = await listDeliveries(db, tenantId, filter);
  return { deliveries: await withAttempts(db, page.rows), next: page.next };
}

export async function findDelivery(
  db: Queryable,
  tenantId: string,
  id: string,
): Promise<DeliveryWithAttempts | undefined> {
  const row = await getDelivery(db, tenantId, id);
  return row === undefined ? undefined : (await withAttempts(db, [row]))[0];
}

export type ReplayOutcome =
  | { outcome: 'replayed'; delivery: DeliveryWithAttempts }
  | { outcome: 'no-such-delivery' }
  | { outcome: 'still-pending' };

/**
 * Replays a finished (DEAD or succeeded) delivery with the same webhook-id and a fresh retry schedule;
 * a pending one is left as it is.
 */
export async function replayDelivery(db: Queryable, tenantId: string, id: string): Promise<ReplayOutcome> {
  const done = await redeliver(db, tenantId, { ids: [id] });
  const found = await findDelivery(db, tenantId, id);
  if (found === undefined) return { outcome: 'no-such-delivery' };
  if (done.length === 0) return { outcome: 'still-pending' };
  return { outcome: 'replayed', delivery: found };
}
