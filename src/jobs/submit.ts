/**
 * Accepting jobs. The job row and its pg-boss job are written in one transaction, so neither can exist
 * without the other. Concurrent submissions are grouped into one transaction (group commit): while one
 * batch is being written, new requests queue up and go together in the next, so the request path costs
 * a fraction of a round trip under load and exactly one batch of one when idle.
 *
 * A batch is one statement (one round trip, its own transaction): it takes the advisory locks of keyed
 * requests, inserts the jobs, reads the rows holding keys that were taken, and enqueues the created
 * jobs by pg-boss's own insert statement, embedded in it (batchStatement). The statement is captured
 * from `PgBoss.insert()` via its `db` option, so pg-boss still writes its own tables, and the batch is
 * prepared once per connection with it. The rare requests that statement cannot settle (a key that
 * expired, a key row that vanished) go through the general path: BEGIN, the same insert, conflict
 * resolution, `PgBoss.insert()`, COMMIT.
 */
import { createHash } from 'node:crypto';
import type { PgBoss } from 'pg-boss';
// Job ids are UUIDv7 (RFC 9562, time-ordered): ids made one after another sort one after another, so the
// b-tree indexes keyed by a job's id (`jobs`' primary key, pg-boss's `(name, id)`) take a batch's new
// entries on their rightmost pages instead of one random page each.
import { v7 as newJobId } from 'uuid';
import { bossDb, captureBossSql, isDataException, withTransaction, type Pool, type PoolClient } from '../db/pool.ts';
import { admit, hasLimitsSql, lockGate, type Verdict } from '../tenants/limits.ts';
import { keyLockId, type IdempotencyRequest } from './idempotency.ts';
import { insertJobsSql, insertReleasingKey, type NewJob } from './lifecycle.ts';
import { JOB_COLUMNS, type JobRow } from './model.ts';
import { QUEUES } from './queues.ts';

/** A job to accept: the job itself (src/jobs/lifecycle.ts NewJob) and how it is to be accepted. */
export interface SubmitRequest extends NewJob {
  /** Retry backoff of this job's type, in seconds. */
  backoff: { initialSeconds: number; maxSeconds: number };
  idempotency: IdempotencyRequest | null;
  /**
   * The tenant has a pending-jobs or submission-rate limit (src/tenants/limits.ts): the job is written in
   * a transaction of its own that checks them, instead of joining the one-statement batch.
   */
  limited?: boolean;
}

export type SubmitOutcome =
  /** `limits`: the verdict of the tenant's limits, when it has some. */
  | { kind: 'created'; job: JobRow; limits?: Verdict }
  /** The key was used before with the same request: the job it created. */
  | { kind: 'replayed'; job: JobRow }
  | { kind: 'in-flight' }
  | { kind: 'key-reused' }
  /** Past one of the tenant's limits: nothing was written. */
  | { kind: 'limited'; verdict: Verdict };

/** What a batch answers of each job. */
export type BatchJob = Pick<JobRow, 'id' | 'type' | 'status' | 'scheduled_for'>;

/** What a batch submission came to: every job accepted (created or replayed, in order), or nothing written. */
export type BatchOutcome =
  /** `limits`: the verdict of the tenant's limits, when it has some. */
  | { kind: 'accepted'; outcomes: Array<{ kind: 'created' | 'replayed'; job: BatchJob }>; limits?: Verdict }
  /** The jobs created would take the tenant past one of its limits. */
  | { kind: 'limited'; verdict: Verdict }
  /** These requests' keys are held by submissions still being written. */
  | { kind: 'in-flight'; indexes: number[] }
  /** These requests' keys were used before with a different request. */
  | { kind: 'key-reused'; indexes: number[] };

/** Rolls a batch's transaction back with the outcome to answer. */
class BatchRefused extends Error {
  readonly outcome: BatchOutcome;
  constructor(outcome: BatchOutcome) {
    super(outcome.kind);
    this.outcome = outcome;
  }
}

export interface SubmitterOptions {
  /** Most requests written in one transaction. (Default: 256) */
  maxBatch?: number;
  /**
   * Batches being written at once; each holds one pooled connection. One lets the next batch grow
   * while the current one is written, which costs Postgres and this process least per job. (Default: 1)
   */
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
  #pumpScheduled = false;
  /** Whether batches go as one statement; off for good if pg-boss's insert statement is not of the expected shape. */
  #oneStatement = true;
  /** The statements built around pg-boss's insert statement (by their builder), and the pg-boss statement each embeds. */
  readonly #statements = new Map<
    (bossSql: string) => BatchStatement | undefined,
    { bossSql: string; statement: BatchStatement }
  >();
  /** Keys of requests this process is writing now: a duplicate is answered 409 without a query. */
  readonly #inFlight = new Set<string>();
  /** The last submission of each limited tenant being written by this process. */
  readonly #limitedTails = new Map<string, Promise<void>>();

  constructor(pool: Pool, boss: PgBoss, opts: SubmitterOptions = {}) {
    this.#pool = pool;
    this.#boss = boss;
    this.#maxBatch = opts.maxBatch ?? 256;
    this.#maxConcurrent = opts.maxConcurrentBatches ?? 1;
    this.#ttl = opts.idempotencyTtlSeconds ?? 86_400;
  }

  submit(req: SubmitRequest): Promise<SubmitOutcome> {
    const k = req.idempotency === null ? null : `${req.tenantId}\u0000${req.idempotency.key}`;
    if (k !== null) {
      if (this.#inFlight.has(k)) return Promise.resolve({ kind: 'in-flight' });
      this.#inFlight.add(k);
    }
    const written =
      req.limited === true
        ? this.#chainLimited(req)
        : new Promise<SubmitOutcome>((resolve, reject) => {
            this.#queue.push({ req, resolve, reject });
            // Start writing once the requests that arrived in this turn of the event loop are all queued,
            // so a burst goes as one batch rather than a batch of one followed by the rest.
            if (!this.#pumpScheduled) {
              this.#pumpScheduled = true;
              setImmediate(() => {
                this.#pumpScheduled = false;
                this.#pump();
              });
            }
          });
    return written.finally(() => {
      if (k !== null) this.#inFlight.delete(k);
    });
  }

  /**
   * A limited tenant's submissions go one after another in this process (each waits on the tenant's row
   * lock anyway), so they hold one pooled connection at a time and never stall the batches of others.
   */
  #chainLimited(req: SubmitRequest): Promise<SubmitOutcome> {
    const prior = this.#limitedTails.get(req.tenantId) ?? Promise.resolve();
    const written = prior.then(() => this.#writeLimited(req));
    const tail = written.then(
      () => undefined,
      () => undefined,
    );
    this.#limitedTails.set(req.tenantId, tail);
    void tail.then(() => {
      if (this.#limitedTails.get(req.tenantId) === tail) this.#limitedTails.delete(req.tenantId);
    });
    return written;
  }

  /**
   * Submits many jobs in one transaction of their own (not grouped with other requests): all are
   * accepted, each created or replayed as a single submission with its key would be, or none is
   * written. The requests' Idempotency-Keys must differ from one another, and they are one tenant's:
   * its limits (src/tenants/limits.ts) admit the jobs created all together, or refuse the batch.
   * `hint.limited`: the tenant is known to have limits (the statement checks again either way).
   */
  async submitAll(tenantId: string, reqs: SubmitRequest[], hint: { limited?: boolean } = {}): Promise<BatchOutcome> {
    if (reqs.length === 0) return { kind: 'accepted', outcomes: [] };
    // The common batch (new jobs, a tenant without limits) is one statement; `limited` (the tenant is
    // known to have limits) skips a try that would fail.
    if (this.#oneStatement && hint.limited !== true) {
      const jobs = await this.#writeWhole(reqs);
      if (jobs !== undefined) return { kind: 'accepted', outcomes: jobs.map((job) => ({ kind: 'created', job })) };
    }
    try {
      return await withTransaction(this.#pool, async (client) => {
        const gate = await lockGate(client, tenantId);
        const outcomes = await this.#insert(client, reqs);
        const indexes = (kind: SubmitOutcome['kind']) => outcomes.flatMap((o, i) => (o.kind === kind ? [i] : []));
        const busy = indexes('in-flight');
        if (busy.length > 0) throw new BatchRefused({ kind: 'in-flight', indexes: busy });
        const reused = indexes('key-reused');
        if (reused.length > 0) throw new BatchRefused({ kind: 'key-reused', indexes: reused });
        const created = indexes('created').length;
        const limits = gate === undefined || created === 0 ? undefined : await admit(client, gate, created);
        if (limits !== undefined && !limits.admitted) throw new BatchRefused({ kind: 'limited', verdict: limits });
        return {
          kind: 'accepted' as const,
          outcomes: outcomes.flatMap((o) => (o.kind === 'created' || o.kind === 'replayed' ? [o] : [])),
          ...(limits === undefined ? {} : { limits }),
        };
      });
    } catch (err) {
      if (err instanceof BatchRefused) return err.outcome;
      throw err;
    }
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
    const reqs = batch.map((p) => p.req);
    let outcomes: Array<SubmitOutcome | undefined>;
    try {
      outcomes = this.#oneStatement ? await this.#writeOneStatement(reqs) : [];
    } catch (err) {
      // A value Postgres refuses (SQLSTATE class 22) fails the one statement, which wrote nothing, for every
      // request in it: write them one by one, so that only the request carrying the value fails.
      if (batch.length > 1 && isDataException(err)) {
        for (const p of batch) await this.#write([p]).catch((e: unknown) => p.reject(e));
        return;
      }
      throw err;
    }
    const rest = reqs.flatMap((req, i) => (outcomes[i] === undefined ? [i] : []));
    if (rest.length > 0) {
      const settled = await withTransaction(this.#pool, (client) =>
        this.#insert(
          client,
          rest.map((i) => reqs[i] as SubmitRequest),
        ),
      );
      rest.forEach((i, k) => (outcomes[i] = settled[k]));
    }
    batch.forEach((p, i) => {
      const o = outcomes[i];
      if (o === undefined) p.reject(new Error('submit batch lost a request'));
      else p.resolve(o);
    });
  }

  /**
   * A limited tenant's job: its limits row locked (so its submissions through every process go one at a
   * time), the job inserted, then checked against the limits with itself counted; past one, rolled back.
   */
  async #writeLimited(req: SubmitRequest): Promise<SubmitOutcome> {
    let refused: Verdict | undefined;
    try {
      return await withTransaction(this.#pool, async (client) => {
        const gate = await lockGate(client, req.tenantId);
        const [outcome] = await this.#insert(client, [req]);
        if (outcome === undefined) throw new Error('submit lost a request');
        if (gate === undefined || outcome.kind !== 'created') return outcome;
        const verdict = await admit(client, gate, 1);
        if (verdict.admitted) return { ...outcome, limits: verdict };
        refused = verdict;
        throw new LimitRefusal();
      });
    } catch (err) {
      if (err instanceof LimitRefusal && refused !== undefined) return { kind: 'limited', verdict: refused };
      throw err;
    }
  }

  /**
   * A whole batch of new jobs for a tenant without limits in one statement (wholeBatchStatement): the
   * jobs, in the order of `reqs`; undefined if that statement wrote nothing because it cannot settle the
   * batch (a key taken or held, the tenant has limits) or pg-boss's statement cannot be used this way.
   */
  async #writeWhole(reqs: SubmitRequest[]): Promise<BatchJob[] | undefined> {
    const ids = reqs.map(() => newJobId());
    const enqueue = await this.#captureEnqueue(reqs, ids, wholeBatchStatement);
    if (enqueue === undefined) {
      this.#oneStatement = false;
      return undefined;
    }
    let rows: BatchJob[];
    try {
      ({ rows } = await this.#pool.query<BatchJob>({
        name: enqueue.statement.name,
        text: enqueue.statement.text,
        values: [...this.#params(reqs, ids), enqueue.jobs],
      }));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === BATCH_UNSETTLED) return undefined;
      if (code !== ENQUEUE_MISMATCH) throw err;
      this.#oneStatement = false;
      return undefined;
    }
    const byId = new Map(rows.map((row) => [row.id, row]));
    return ids.map((id) => {
      const job = byId.get(id);
      if (job === undefined) throw new Error('submit batch lost a job');
      return job;
    });
  }

  /**
   * The batch in one statement. Returns each request's outcome, or undefined where the general path
   * must decide (the key expired, or its row is not visible to this statement's snapshot).
   */
  async #writeOneStatement(reqs: SubmitRequest[]): Promise<Array<SubmitOutcome | undefined>> {
    const ids = reqs.map(() => newJobId());
    const enqueue = await this.#captureEnqueue(reqs, ids, batchStatement);
    if (enqueue === undefined) {
      this.#oneStatement = false;
      return [];
    }
    let rows: Array<
      JobRow & { locked: boolean; created: boolean | null; hash: string | null; expired: boolean | null }
    >;
    try {
      ({ rows } = await this.#pool.query({
        name: enqueue.statement.name,
        text: enqueue.statement.text,
        values: [...this.#params(reqs, ids), enqueue.jobs],
      }));
    } catch (err) {
      // pg-boss's statement did not enqueue what it was given: it changed shape. Stop using it this way.
      if ((err as { code?: unknown }).code !== ENQUEUE_MISMATCH) throw err;
      this.#oneStatement = false;
      return [];
    }
    return rows.map((row, i): SubmitOutcome | undefined => {
      const idem = reqs[i]?.idempotency ?? null;
      if (!row.locked) return { kind: 'in-flight' };
      if (row.created === true) return { kind: 'created', job: jobOf(row) };
      if (row.created === null || row.expired !== false || idem === null) return undefined;
      return row.hash === idem.fingerprint ? { kind: 'replayed', job: jobOf(row) } : { kind: 'key-reused' };
    });
  }

  /**
   * The statement `build` makes around pg-boss's insert statement for these jobs, and their payload,
   * captured through `insert()`'s `db` option without running it; undefined if pg-boss's statement
   * cannot be embedded (see batchStatement).
   */
  async #captureEnqueue(
    reqs: SubmitRequest[],
    ids: string[],
    build: (bossSql: string) => BatchStatement | undefined,
  ): Promise<{ statement: BatchStatement; jobs: string } | undefined> {
    const captured = (
      await captureBossSql((db) =>
        this.#boss.insert(
          QUEUES.jobs,
          reqs.map((req, i) => bossJob(ids[i] ?? '', req)),
          { db, returnId: true },
        ),
      )
    ).at(-1);
    const jobs = captured?.values[0];
    if (captured === undefined || captured.values.length !== 1 || typeof jobs !== 'string') return undefined;
    // pg-boss builds the same text for every insert into one queue: the statement around it is built once.
    let built = this.#statements.get(build);
    if (built?.bossSql !== captured.text) {
      const statement = build(captured.text);
      if (statement === undefined) return undefined;
      built = { bossSql: captured.text, statement };
      this.#statements.set(build, built);
    }
    return { statement: built.statement, jobs };
  }

  #params(reqs: SubmitRequest[], ids: string[]): unknown[] {
    return [
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
      reqs.map((r) => r.scheduledFor ?? null),
      reqs.map((r) => r.priority ?? 0),
      reqs.map((r) => r.timeoutSeconds ?? null),
      reqs.map((r) => r.expireAfterSeconds ?? null),
      reqs.map((r) => r.scheduleId ?? null),
      this.#ttl,
      reqs.map((r) => (r.traceContext == null ? null : JSON.stringify(r.traceContext))),
    ];
  }

  async #insert(client: PoolClient, reqs: SubmitRequest[]): Promise<SubmitOutcome[]> {
    const ids = reqs.map(() => newJobId());
    // One statement: take each keyed request's advisory lock (held by a concurrent writer of the same
    // key → in flight), then insert every job whose key is free; a taken key is a conflict to resolve.
    const { rows } = await client.query<JobRow & { ord: number; locked: boolean }>(
      `WITH ${REQ_CTE}, ins AS (${INSERT_JOBS} RETURNING ${JOB_COLUMNS})
       SELECT ins.*, req.ord::int AS ord, req.locked FROM req LEFT JOIN ins ON ins.id = req.id ORDER BY req.ord`,
      this.#params(reqs, ids),
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
    const created = outcomes.flatMap((o, i) =>
      o.kind === 'created' ? [bossJob(o.job.id, reqs[i] as SubmitRequest)] : [],
    );
    if (created.length > 0) await this.#boss.insert(QUEUES.jobs, created, { db: bossDb(client) });
    return outcomes;
  }

  /** Inserts and enqueues jobs inside the caller's transaction (a schedule's firing), with the same outcomes as submit(). */
  insertIn(client: PoolClient, reqs: SubmitRequest[]): Promise<SubmitOutcome[]> {
    return this.#insert(client, reqs);
  }

  /**
   * The job that an earlier request with this key and body created, while its key is held: what a repeat
   * of that request is answered with even when it would no longer be accepted (its type, the type's
   * checks or the callback allow-list changed since).
   */
  async storedReplay(tenantId: string, idem: IdempotencyRequest): Promise<JobRow | undefined> {
    const { rows } = await this.#pool.query<JobRow>(
      `SELECT ${JOB_COLUMNS} FROM jobs
        WHERE tenant_id = $1 AND idempotency_key = $2 AND idempotency_hash = $3 AND idempotency_expires_at >= now()`,
      [tenantId, idem.key, idem.fingerprint],
    );
    return rows[0];
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
    const job = await insertReleasingKey(client, req, {
      id,
      key: idem.key,
      hash: idem.fingerprint,
      keySeconds: this.#ttl,
    });
    if (job === undefined) throw new Error('insert after key release returned no row');
    return { kind: 'created', job };
  }
}

/** Rolls a limited submission back (withTransaction rolls back on a throw). */
class LimitRefusal extends Error {
  override name = 'LimitRefusal';
}

function stripExtra(row: JobRow & { ord: number; locked: boolean }): JobRow {
  const { ord: _o, locked: _l, ...job } = row;
  return job;
}

function jobOf(
  row: JobRow & {
    locked: boolean;
    created: boolean | null;
    hash: string | null;
    expired: boolean | null;
    ord?: number;
  },
): JobRow {
  const { locked: _l, created: _c, hash: _h, expired: _e, ord: _o, ...job } = row;
  return job;
}

/** The pg-boss job that runs a longhaul job: one execution, with the type's retry policy. */
function bossJob(id: string, req: SubmitRequest) {
  return {
    id,
    data: { jobId: id },
    group: { id: req.tenantId, tier: req.tenantId },
    retryLimit: req.maxAttempts - 1,
    retryDelay: req.backoff.initialSeconds,
    retryDelayMax: req.backoff.maxSeconds,
    retryBackoff: true,
    priority: req.priority ?? 0,
    ...(req.scheduledFor == null ? {} : { startAfter: req.scheduledFor }),
  };
}

/** SQLSTATE raised by longhaul_enqueued (sql/080) when pg-boss's statement did not insert every job it was given. */
const ENQUEUE_MISMATCH = 'LH001';
/** SQLSTATE raised by longhaul_batch_unsettled (sql/096): the whole-batch statement cannot settle its batch. */
const BATCH_UNSETTLED = 'LH003';

/** The batch as rows ($1–$15 and $17 arrays, one element per request), each keyed request with its advisory lock tried. */
const reqCte = (name: string) => `${name} AS MATERIALIZED (
  SELECT r.*, CASE WHEN r.key IS NULL THEN true ELSE pg_try_advisory_xact_lock(r.lock_id) END AS locked
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[], $7::int[],
                $8::text[], $9::text[], $10::bigint[], $11::timestamptz[], $12::int[], $13::int[], $14::int[], $15::uuid[],
                $17::jsonb[])
         WITH ORDINALITY AS r(id, tenant_id, type, input, metadata, callback_url, max_attempts, key, hash, lock_id,
                              scheduled_for, priority, timeout_seconds, expire_after, schedule_id, trace_context, ord))`;

const REQ_CTE = reqCte('req');
/** Inserts every locked request's job whose key is free ($16: the key's lifetime in seconds). */
const INSERT_JOBS = insertJobsSql('req', '$16');

/** A prepared statement: its name, which changes with its text. */
interface BatchStatement {
  name: string;
  text: string;
}

/**
 * The one-statement batch with pg-boss's insert statement `bossSql` (as `insert()` builds it: one JSON
 * parameter, an INSERT, or a WITH whose expressions end in the INSERT and its NOTIFY) embedded as
 * expressions of its own, its parameter the payload ($18) of the jobs this statement created. Undefined
 * if `bossSql` is not of that shape, or uses a name the batch uses (`lh_`).
 */
export function batchStatement(bossSql: string): BatchStatement | undefined {
  const boss = embeddedBoss(
    bossSql,
    `(SELECT json_agg(e)::text FROM json_array_elements($18::text::json) e
       WHERE (e->>'id')::uuid IN (SELECT id FROM lh_ins))`,
  );
  if (boss === undefined) return undefined;
  const text = `WITH ${reqCte('lh_req')},
    lh_ins AS (${insertJobsSql('lh_req', '$16')} RETURNING ${JOB_COLUMNS}),
    ${boss.ctes}
    lh_enq AS (${boss.main}),
    lh_check AS (SELECT longhaul_enqueued((SELECT count(*) FROM lh_enq), (SELECT count(*) FROM lh_ins)) AS n),
    lh_res AS (
      SELECT lh_req.ord, true AS created, NULL::text AS hash, NULL::boolean AS expired, lh_ins.*
        FROM lh_req JOIN lh_ins ON lh_ins.id = lh_req.id
      UNION ALL
      SELECT lh_req.ord, false, p.*
        FROM lh_req CROSS JOIN LATERAL (
          SELECT idempotency_hash, idempotency_expires_at < now(), ${JOB_COLUMNS}
            FROM jobs WHERE jobs.tenant_id = lh_req.tenant_id AND jobs.idempotency_key = lh_req.key) p
       WHERE lh_req.locked AND lh_req.key IS NOT NULL AND lh_req.id NOT IN (SELECT id FROM lh_ins))
  SELECT lh_req.locked, lh_res.* FROM lh_req LEFT JOIN lh_res ON lh_res.ord = lh_req.ord CROSS JOIN lh_check
   ORDER BY lh_req.ord`;
  return { name: `longhaul-submit-batch-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`, text };
}

/**
 * The batch of POST /v1/jobs/batch in one statement, with pg-boss's insert statement `bossSql` embedded as
 * in batchStatement, its payload ($18) the batch's whole: all or nothing, it inserts every job and its
 * pg-boss job, or fails (longhaul_batch_unsettled, sql/096: SQLSTATE LH003) when it did not create every
 * job (a key taken or held by another writer) or the tenant ($2) has limits, which the transactional path
 * settles. Answers the created jobs' `id, type, status, scheduled_for`, in no order.
 */
export function wholeBatchStatement(bossSql: string): BatchStatement | undefined {
  // pg-boss is given the payload only once every job was created: a batch that falls back (a replay of
  // one already written, most often) does not insert its executions only to roll them back.
  const boss = embeddedBoss(
    bossSql,
    `(CASE WHEN (SELECT count(*) FROM lh_ins) = cardinality($1::uuid[]) THEN $18::text ELSE '[]' END)`,
  );
  if (boss === undefined) return undefined;
  // The check is a one-time filter of the answer, so it runs whatever the statement inserted.
  const text = `WITH ${reqCte('lh_req')},
    lh_ins AS (${insertJobsSql('lh_req', '$16')} RETURNING id, type, status, scheduled_for),
    ${boss.ctes}
    lh_enq AS (${boss.main}),
    lh_check AS (
      SELECT CASE WHEN (SELECT count(*) FROM lh_ins) <> cardinality($1::uuid[]) OR ${hasLimitsSql('($2::uuid[])[1]')}
                  THEN longhaul_batch_unsettled((SELECT count(*) FROM lh_ins), cardinality($1::uuid[]))
                  ELSE longhaul_enqueued((SELECT count(*) FROM lh_enq), (SELECT count(*) FROM lh_ins)) END AS n)
  SELECT lh_ins.* FROM lh_ins WHERE (SELECT n FROM lh_check) IS NOT NULL`;
  return { name: `longhaul-submit-all-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`, text };
}

/**
 * pg-boss's insert statement `bossSql` split for embedding (its WITH list, with a trailing comma when
 * not empty, and its last statement), its one parameter replaced by `payload`; undefined if it is not of
 * the shape batchStatement takes.
 */
function embeddedBoss(bossSql: string, payload: string): { ctes: string; main: string } | undefined {
  const boss = withParts(bossSql.trim());
  if (boss === undefined || /\$(?!1(?!\d))\d|\blh_/.test(bossSql) || !/\$1(?!\d)/.test(bossSql)) return undefined;
  const embed = (sql: string) => sql.replace(/\$1(?!\d)/g, payload);
  return { ctes: boss.ctes === '' ? '' : `${embed(boss.ctes)},`, main: embed(boss.main) };
}

/**
 * A statement split into its WITH list (without WITH) and the statement that follows it; a statement
 * without WITH is all `main`. Undefined unless `main` is a SELECT or an INSERT.
 */
function withParts(sql: string): { ctes: string; main: string } | undefined {
  const main = (ctes: string, rest: string) => (/^(SELECT|INSERT)\s/i.test(rest) ? { ctes, main: rest } : undefined);
  const head = /^WITH\s+/i.exec(sql);
  if (head === null) return main('', sql);
  // The list ends where an expression's closing parenthesis is not followed by a comma.
  let depth = 0;
  let quote: string | undefined;
  for (let i = head[0].length; i < sql.length; i++) {
    const ch = sql[i];
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '(') depth++;
    else if (ch === ')' && --depth === 0) {
      const rest = sql.slice(i + 1).trimStart();
      if (!rest.startsWith(',')) return main(sql.slice(head[0].length, i + 1), rest);
    }
  }
  return undefined;
}
