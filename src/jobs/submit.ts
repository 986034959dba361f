/**
 * Accepting jobs. The job row and its pg-boss job are written in one transaction, so neither can exist
 * without the other. Concurrent submissions are grouped into one transaction (group commit): while one
 * batch is being written, new requests queue up and go together in the next, so the request path costs
 * a fraction of a round trip under load and exactly one batch of one when idle.
 */
import { randomUUID } from 'node:crypto';
import type { PgBoss } from 'pg-boss';
import { bossDb, withTransaction, type Pool, type PoolClient } from '../db/pool.ts';
import type { Json } from '../worker/sdk.ts';
import { keyLockId, type IdempotencyRequest } from './idempotency.ts';
import { JOB_COLUMNS, type JobRow } from './model.ts';
import { QUEUES } from './queues.ts';

export interface SubmitRequest {
  tenantId: string;
  type: string;
  input: Json;
  metadata: Json | null;
  callbackUrl: string | null;
  maxAttempts: number;
  /** Retry backoff of this job's type, in seconds. */
  backoff: { initialSeconds: number; maxSeconds: number };
  idempotency: IdempotencyRequest | null;
}

export type SubmitOutcome =
  | { kind: 'created'; job: JobRow }
  /** The key was used before with the same request: the job it created. */
  | { kind: 'replayed'; job: JobRow }
  | { kind: 'in-flight' }
  | { kind: 'key-reused' };

export interface SubmitterOptions {
  /** Most requests written in one transaction. (Default: 256) */
  maxBatch?: number;
  /** Batches being written at once; each holds one pooled connection. (Default: 4) */
  maxConcurrentBatches?: number;
  /** How long an Idempotency-Key is remembered, in seconds. (Default: 86400) */
  idempotencyTtlSeconds?: number;
}

interface Pending {
  req: SubmitRequest;
  resolve: (o: SubmitOutcome) => void;
  reject: (e: unknown) => void;
}

export class JobSubmitter {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #maxBatch: number;
  readonly #maxConcurrent: number;
  readonly #ttl: number;
  #queue: Pending[] = [];
  #active = 0;
  /** Keys of requests this process is writing now: a duplicate is answered 409 without a query. */
  readonly #inFlight = new Set<string>();

  constructor(pool: Pool, boss: PgBoss, opts: SubmitterOptions = {}) {
    this.#pool = pool;
    this.#boss = boss;
    this.#maxBatch = opts.maxBatch ?? 256;
    this.#maxConcurrent = opts.maxConcurrentBatches ?? 4;
    this.#ttl = opts.idempotencyTtlSeconds ?? 86_400;
  }

  submit(req: SubmitRequest): Promise<SubmitOutcome> {
    const k = req.idempotency === null ? null : `${req.tenantId}\u0000${req.idempotency.key}`;
    if (k !== null) {
      if (this.#inFlight.has(k)) return Promise.resolve({ kind: 'in-flight' });
      this.#inFlight.add(k);
    }
    return new Promise<SubmitOutcome>((resolve, reject) => {
      this.#queue.push({ req, resolve, reject });
      this.#pump();
    }).finally(() => {
      if (k !== null) this.#inFlight.delete(k);
    });
  }

  #pump(): void {
    while (this.#active < this.#maxConcurrent && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      this.#active++;
      this.#write(batch)
        .catch((err: unknown) => {
          for (const p of batch) p.reject(err);
        })
        .finally(() => {
          this.#active--;
          this.#pump();
        });
    }
  }

  async #write(batch: Pending[]): Promise<void> {
    const outcomes = await withTransaction(this.#pool, (client) => this.#insert(client, batch.map((p) => p.req)));
    batch.forEach((p, i) => {
      const o = outcomes[i];
      if (o === undefined) p.reject(new Error('submit batch lost a request'));
      else p.resolve(o);
    });
  }

  async #insert(client: PoolClient, reqs: SubmitRequest[]): Promise<SubmitOutcome[]> {
    const ids = reqs.map(() => randomUUID());
    // One statement: take each keyed request's advisory lock (held by a concurrent writer of the same
    // key → in flight), then insert every job whose key is free; a taken key is a conflict to resolve.
    const { rows } = await client.query<JobRow & { ord: number; locked: boolean }>(
      `WITH req AS MATERIALIZED (
         SELECT r.*, CASE WHEN r.key IS NULL THEN true ELSE pg_try_advisory_xact_lock(r.lock_id) END AS locked
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[], $7::int[],
                       $8::text[], $9::text[], $10::bigint[])
                WITH ORDINALITY AS r(id, tenant_id, type, input, metadata, callback_url, max_attempts, key, hash, lock_id, ord)),
       ins AS (
         INSERT INTO jobs (id, tenant_id, type, input, metadata, callback_url, max_attempts,
                           idempotency_key, idempotency_hash, idempotency_expires_at)
         SELECT id, tenant_id, type, input, metadata, callback_url, max_attempts, key, hash,
                CASE WHEN key IS NULL THEN NULL ELSE now() + make_interval(secs => $11) END
           FROM req WHERE locked
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ${JOB_COLUMNS})
       SELECT ins.*, req.ord::int AS ord, req.locked FROM req LEFT JOIN ins ON ins.id = req.id ORDER BY req.ord`,
      [
        ids,
        reqs.map((r) => r.tenantId),
        reqs.map((r) => r.type),
        reqs.map((r) => JSON.stringify(r.input)),
        reqs.map((r) => (r.metadata === null ? null : JSON.stringify(r.metadata))),
        reqs.map((r) => r.callbackUrl),
        reqs.map((r) => r.maxAttempts),
        reqs.map((r) => r.idempotency?.key ?? null),
        reqs.map((r) => r.idempotency?.fingerprint ?? null),
        reqs.map((r) => (r.idempotency === null ? null : keyLockId(r.tenantId, r.idempotency.key))),
        this.#ttl,
      ],
    );
    const outcomes: SubmitOutcome[] = [];
    const conflicts: number[] = [];
    rows.forEach((row, i) => {
      if (!row.locked) outcomes[i] = { kind: 'in-flight' };
      else if (row.id === null) conflicts.push(i);
      else outcomes[i] = { kind: 'created', job: stripExtra(row) };
    });
    for (const i of conflicts) {
      const req = reqs[i];
      const id = ids[i];
      if (req === undefined || id === undefined) continue;
      outcomes[i] = await this.#resolveConflict(client, req, id);
    }
    const created = outcomes.flatMap((o, i) => (o.kind === 'created' ? [{ o, req: reqs[i] }] : []));
    if (created.length > 0) {
      await this.#boss.insert(
        QUEUES.jobs,
        created.map(({ o, req }) => ({
          id: o.job.id,
          data: { jobId: o.job.id },
          group: { id: o.job.tenant_id },
          retryLimit: o.job.max_attempts - 1,
          retryDelay: req?.backoff.initialSeconds,
          retryDelayMax: req?.backoff.maxSeconds,
          retryBackoff: true,
        })),
        { db: bossDb(client) },
      );
    }
    return outcomes;
  }

  /** A keyed request whose key is taken: replay, 422, or (if the key expired) release it and insert. */
  async #resolveConflict(client: PoolClient, req: SubmitRequest, id: string): Promise<SubmitOutcome> {
    const idem = req.idempotency;
    if (idem === null) throw new Error('conflict without an idempotency key');
    const { rows } = await client.query<JobRow & { hash: string; expired: boolean }>(
      `SELECT ${JOB_COLUMNS}, idempotency_hash AS hash, idempotency_expires_at < now() AS expired
         FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2`,
      [req.tenantId, idem.key],
    );
    const prior = rows[0];
    if (prior !== undefined && !prior.expired) {
      const { hash, expired: _e, ...job } = prior;
      return hash === idem.fingerprint ? { kind: 'replayed', job } : { kind: 'key-reused' };
    }
    // The key expired (or its job was deleted since): release it and use it for this request.
    await client.query('UPDATE jobs SET idempotency_key = NULL WHERE tenant_id = $1 AND idempotency_key = $2', [req.tenantId, idem.key]);
    const { rows: inserted } = await client.query<JobRow>(
      `INSERT INTO jobs (id, tenant_id, type, input, metadata, callback_url, max_attempts,
                         idempotency_key, idempotency_hash, idempotency_expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))
       RETURNING ${JOB_COLUMNS}`,
      [id, req.tenantId, req.type, JSON.stringify(req.input), req.metadata === null ? null : JSON.stringify(req.metadata), req.callbackUrl, req.maxAttempts, idem.key, idem.fingerprint, this.#ttl],
    );
    const job = inserted[0];
    if (job === undefined) throw new Error('insert after key release returned no row');
    return { kind: 'created', job };
  }
}

function stripExtra(row: JobRow & { ord: number; locked: boolean }): JobRow {
  const { ord: _o, locked: _l, ...job } = row;
  return job;
}

/** Releases Idempotency-Keys older than their expiry, so the unique index stays small. */
export async function releaseExpiredKeys(pool: Pool): Promise<number> {
  const { rowCount } = await pool.query(
    `UPDATE jobs SET idempotency_key = NULL, idempotency_hash = NULL
      WHERE idempotency_key IS NOT NULL AND idempotency_expires_at < now()`,
  );
  return rowCount ?? 0;
}
