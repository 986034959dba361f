/** What the API's handlers share: the dependencies and the per-request variables. */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config.ts';
import type { Pool } from '../db/pool.ts';
import type { JobTypeRegistry } from '../jobs/registry.ts';
import type { JobSubmitter } from '../jobs/submit.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { RealtimeHub } from '../realtime/hub.ts';
import type { Storage } from '../storage/storage.ts';
import type { LimitedTenants } from '../tenants/limits.ts';
import type { Tenant } from '../tenants/repository.ts';
import type { TokenSigner } from '../tokens/signer.ts';

export interface AppDeps {
  config: Config;
  pool: Pool;
  boss: PgBoss;
  log: Logger;
  metrics: Metrics;
  registry: JobTypeRegistry;
  submitter: JobSubmitter;
  /** Which tenants have pending or rate limits (their submissions are checked against them); none without it. */
  limitedTenants?: LimitedTenants;
  /**
   * The process's LISTEN connection (src/db/listener.ts): while it is down the database is taken as
   * unreachable, and requests that need it answer 503 at once instead of each waiting to fail.
   */
  database?: { readonly connected: boolean };
  /** Extra readiness checks by name (e.g. the realtime listener); each resolves true when ready. */
  readiness?: Record<string, () => Promise<boolean>>;
  /** This process's live event hub (GET /v1/jobs/{id}/events answers 503 without it). */
  realtime?: RealtimeHub;
  /** Signs and verifies short-lived tokens (stream tokens, download links); routes that need it answer 503 without it. */
  signer?: TokenSigner;
  /** Where job artifacts are stored. (Default: the local filesystem under the data dir) */
  storage?: Storage;
}

export interface Variables {
  requestId: string;
  log: Logger;
  tenant: Tenant;
  /** Whether a state-changing request came with a body (read and checked by readBody). */
  hasBody: boolean;
}

export type AppEnv = { Variables: Variables };
export type App = OpenAPIHono<AppEnv>;
