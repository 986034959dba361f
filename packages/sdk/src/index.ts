/**
 * @longhaul/sdk: everything a module needs to define a longhaul job type. A job runs in chunks;
 * after each chunk its cursor, state and progress are committed in one transaction (the checkpoint),
 * so a retried or resumed job continues from the last committed chunk. The next chunk starts while
 * that checkpoint commits; it is stopped (its signal fires) if the commit fails, and whatever it
 * does through `ctx.db` waits for the commit, so it sees the previous chunk's writes.
 *
 * The service imports this file from source; other packages install it built (JavaScript + .d.ts).
 * A job type's module and the service may then hold two copies of it, so nothing here may rely on
 * identity across copies: errors are recognised by a registered symbol, not by `instanceof`.
 */
import type { Pool, PoolClient } from 'pg';
import type { z } from 'zod';

/** What `ctx.db` offers: node-postgres's `query`, joined to the step's transaction. */
export type Queryable = Pick<Pool, 'query'> | Pick<PoolClient, 'query'>;

type LogFn = {
  (msg: string): void;
  (obj: object, msg?: string): void;
};

/** The job's logger (pino in the service): every line carries the job's id, type and attempt. */
export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
}

/** Any JSON value: cursors, states and results are stored as jsonb. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface JobInfo<Input> {
  id: string;
  tenantId: string;
  type: string;
  input: Input;
  metadata: Json | null;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  attempt: number;
}

export interface JobContext<Input> {
  job: JobInfo<Input>;
  log: Logger;
  /** Fires when the job is cancelled, its lease is lost, or the process shuts down. */
  signal: AbortSignal;
  /**
   * The transaction that will commit with this step's checkpoint: writes made through it are
   * committed together with the new cursor and state, or not at all.
   */
  db: Queryable;
}

export interface StartResult<State> {
  /** How many items the whole job will process, when known (for progress percent). */
  total?: number | null;
  /** The initial state; it is saved as the first checkpoint. */
  state: State;
  /** Where the first chunk starts (default null). */
  cursor?: Json;
}

export interface ChunkResult<State> {
  /** Where the next chunk starts, or null when there is nothing left. */
  cursor: Json;
  done: boolean;
  /** How many items this chunk processed (added to the job's progress). */
  processed: number;
  state: State;
  /**
   * Settles once what the chunk wrote outside the database (a file, an object) is durable. The chunk's
   * checkpoint commits only after it, while the next chunk may already run; a rejection fails the step
   * like a throw from `chunk`. (Default: none: the chunk's writes were durable when it returned)
   */
  durable?: Promise<void>;
}

/** A problem with one field of a job's input, named by its path inside `input` (e.g. `group_by.0`). */
export interface FieldIssue {
  field: string;
  message: string;
}

/** What `check` knows about the request besides its input. */
export interface CheckContext {
  tenant: { id: string; name: string };
}

export interface JobTypeDefinition<Input = unknown, State extends Json = Json, Result extends Json = Json> {
  /** The name clients put in `type`: lowercase letters, digits, `-` and `_`. */
  name: string;
  /** Schema of `input`; a request whose input fails it gets a 422 naming the fields. */
  input: z.ZodType<Input>;
  /**
   * Extra checks that need more than the schema (e.g. against configuration or a database catalogue),
   * for the tenant submitting; returns field errors (each becomes a 422).
   */
  check?: (input: Input, ctx: CheckContext) => FieldIssue[] | Promise<FieldIssue[]>;
  /** Items per chunk, passed to `chunk` as `ctx`'s size hint. (Default: 100) */
  chunkSize?: number;
  /** How many attempts before the job fails for good. (Default: 3) */
  maxAttempts?: number;
  /** Retry backoff: first delay, doubling, capped, with jitter. (Default: 1 s initial, 300 s cap) */
  backoff?: { initialSeconds: number; maxSeconds: number };
  /** Alert when a running job has not checkpointed for this long. (Default: 600) */
  stallAfterSeconds?: number;
  /** At most this many jobs of this type at once in one worker process. (Default: the process's concurrency) */
  concurrency?: number;
  /**
   * The longest a job of this type may run in all, in seconds: from its first start to its end, across
   * executions and retries. Past it the job stops at its next chunk boundary (a chunk still running is
   * aborted through `ctx.signal`) and fails with a `timeout` error. A request may ask for another
   * `timeout_seconds` up to `maxTimeoutSeconds`. (Default: no limit)
   */
  timeoutSeconds?: number;
  /** The largest `timeout_seconds` a request may ask for. (Default: no maximum) */
  maxTimeoutSeconds?: number;
  /**
   * A job of this type not started this many seconds after it may start (its `run_at`, or its
   * submission) is never run and fails with an `expired` error. A request may ask for another
   * `expire_after_seconds` up to `maxExpireAfterSeconds`. (Default: it waits as long as it takes)
   */
  expireAfterSeconds?: number;
  /** The largest `expire_after_seconds` a request may ask for. (Default: no maximum) */
  maxExpireAfterSeconds?: number;
  start(ctx: JobContext<Input>): Promise<StartResult<State>>;
  chunk(ctx: JobContext<Input> & { chunkSize: number }, cursor: Json, state: State): Promise<ChunkResult<State>>;
  finish(ctx: JobContext<Input>, state: State): Promise<Result>;
}

// Job types are stored in one registry whatever their input, state and result types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyJobType = JobTypeDefinition<any, any, any>;

/** Identity function that gives a job type definition its types. */
export function defineJobType<Input, State extends Json, Result extends Json>(
  def: JobTypeDefinition<Input, State, Result>,
): JobTypeDefinition<Input, State, Result> {
  return def;
}

const PERMANENT = Symbol.for('longhaul.PermanentError');

/** Throw this from a job type to fail the job at once, without retrying. */
export class PermanentError extends Error {
  override name = 'PermanentError';
  readonly [PERMANENT] = true;
}

/** True for a PermanentError from any copy of this package (the service's or a job type's own). */
export function isPermanentError(err: unknown): err is PermanentError {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[PERMANENT] === true;
}

export const DEFAULT_MAX_ATTEMPTS = 3;
export const DEFAULT_CHUNK_SIZE = 100;
export const DEFAULT_STALL_AFTER_SECONDS = 600;
export const DEFAULT_BACKOFF = { initialSeconds: 1, maxSeconds: 300 } as const;
