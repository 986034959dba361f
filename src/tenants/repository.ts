/** Tenants, their API keys and webhook secrets: the SQL of the tables that hold them. */
import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../db/pool.ts';

/** Prefix of every API key, so a leaked key is recognisable by secret scanners. */
export const API_KEY_PREFIX = 'lh_';

export interface Tenant {
  id: string;
  name: string;
  created_at: Date;
}

export interface CreatedTenant {
  id: string;
  name: string;
  api_key: string;
  webhook_secret: string;
}

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** 32 random bytes: unguessable, so a plain SHA-256 of it is a safe thing to store. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** A Standard Webhooks symmetric secret: `whsec_` + base64 of 32 random bytes. */
function generateWebhookSecret(): string {
  return 'whsec_' + randomBytes(32).toString('base64');
}

export class TenantExistsError extends Error {
  override name = 'TenantExistsError';
}

/** An operation named a tenant that does not exist (an admin's typo, or a tenant deleted meanwhile). */
export class NoSuchTenantError extends Error {
  override name = 'NoSuchTenantError';
  constructor(tenantId: string) {
    super(`no tenant with id ${tenantId}`);
  }
}

export async function createTenant(db: Queryable, name: string): Promise<CreatedTenant> {
  const apiKey = generateApiKey();
  const secret = generateWebhookSecret();
  try {
    const { rows } = await db.query<{ id: string }>(
      `WITH t AS (INSERT INTO tenants (name) VALUES ($1) RETURNING id),
            k AS (INSERT INTO api_keys (tenant_id, key_hash, key_prefix) SELECT id, $2, $3 FROM t),
            s AS (INSERT INTO webhook_secrets (tenant_id, secret) SELECT id, $4 FROM t)
       SELECT id FROM t`,
      [name, hashApiKey(apiKey), apiKey.slice(0, 10), secret],
    );
    const row = rows[0];
    if (row === undefined) throw new Error('tenant insert returned no row');
    return { id: row.id, name, api_key: apiKey, webhook_secret: secret };
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new TenantExistsError(`a tenant named "${name}" exists`);
    throw err;
  }
}

export interface SecretInfo {
  id: string;
  /** The first characters, to tell secrets apart (the secret itself is shown only when created). */
  prefix: string;
  created_at: Date;
  expires_at: Date | null;
}

/** Characters of a secret shown in listings: `whsec_` and 4 of the key. */
const SECRET_PREFIX_CHARS = 10;

/**
 * Adds a new secret; every other active secret stays valid for `graceSeconds` more (0 revokes them now).
 * Returns the new secret, shown once; throws NoSuchTenantError for an unknown tenant.
 */
export async function rotateSecret(
  db: Queryable,
  tenantId: string,
  graceSeconds: number,
): Promise<SecretInfo & { secret: string }> {
  const secret = generateWebhookSecret();
  let rows: Array<{ id: string; created_at: Date }>;
  try {
    ({ rows } = await db.query<{ id: string; created_at: Date }>(
      `WITH old AS (
         UPDATE webhook_secrets SET expires_at = now() + make_interval(secs => $3)
          WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now() + make_interval(secs => $3)))
       INSERT INTO webhook_secrets (tenant_id, secret) VALUES ($1, $2) RETURNING id, created_at`,
      [tenantId, secret, graceSeconds],
    ));
  } catch (err) {
    // The foreign key: the statement as a whole failed, so no other secret's expiry moved either.
    if ((err as { code?: string }).code === '23503') throw new NoSuchTenantError(tenantId);
    throw err;
  }
  const row = rows[0];
  if (row === undefined) throw new Error('secret insert returned no row');
  return {
    id: row.id,
    prefix: secret.slice(0, SECRET_PREFIX_CHARS),
    created_at: row.created_at,
    expires_at: null,
    secret,
  };
}

/** The tenant's secrets that still sign deliveries, newest first. */
export async function activeSecrets(db: Queryable, tenantId: string): Promise<SecretInfo[]> {
  const { rows } = await db.query<SecretInfo>(
    `SELECT id, left(secret, ${SECRET_PREFIX_CHARS}) AS prefix, created_at, expires_at FROM webhook_secrets
      WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC`,
    [tenantId],
  );
  return rows;
}

export interface ApiKeyInfo {
  id: string;
  tenant_id: string;
  name: string;
  /** The key's first characters, to tell keys apart (the key itself is never stored). */
  prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const KEY_COLUMNS = 'id, tenant_id, name, key_prefix AS prefix, created_at, last_used_at, revoked_at';

/** Adds another named API key to a tenant (keys are shown once: the caller must hand it over now). */
export async function createApiKey(
  db: Queryable,
  tenantId: string,
  name = 'default',
): Promise<{ key: ApiKeyInfo; apiKey: string } | undefined> {
  const apiKey = generateApiKey();
  const { rows } = await db.query<ApiKeyInfo>(
    `INSERT INTO api_keys (tenant_id, key_hash, key_prefix, name)
     SELECT id, $2, $3, $4 FROM tenants WHERE id = $1
     RETURNING ${KEY_COLUMNS}`,
    [tenantId, hashApiKey(apiKey), apiKey.slice(0, 10), name],
  );
  const key = rows[0];
  return key === undefined ? undefined : { key, apiKey };
}

/** A tenant's keys, revoked ones included, newest first; undefined when there is no such tenant. */
export async function listApiKeys(db: Queryable, tenantId: string): Promise<ApiKeyInfo[] | undefined> {
  // From the tenant outwards, so "no such tenant" (no row) and "no keys" (one row of NULLs) differ.
  const { rows } = await db.query<{ [K in keyof ApiKeyInfo]: ApiKeyInfo[K] | null }>(
    `SELECT k.id, k.tenant_id, k.name, k.key_prefix AS prefix, k.created_at, k.last_used_at, k.revoked_at
       FROM tenants t LEFT JOIN api_keys k ON k.tenant_id = t.id
      WHERE t.id = $1 ORDER BY k.created_at DESC, k.id`,
    [tenantId],
  );
  if (rows.length === 0) return undefined;
  return rows.filter((k): k is ApiKeyInfo => k.id !== null);
}

/**
 * Revokes a key; API processes stop accepting it when their cached lookup expires. Undefined when the
 * tenant has no such key; a key revoked before keeps its first revocation time.
 */
export async function revokeApiKey(db: Queryable, tenantId: string, keyId: string): Promise<ApiKeyInfo | undefined> {
  const { rows } = await db.query<ApiKeyInfo>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND tenant_id = $2
     RETURNING ${KEY_COLUMNS}`,
    [keyId, tenantId],
  );
  return rows[0];
}

export interface KeyHolder {
  tenant: Tenant;
  keyId: string;
}

/**
 * The tenant holding a live API key. Also records the key's use: at most one write a minute per key,
 * and only on the callers' cache misses.
 */
export async function tenantByApiKey(db: Queryable, apiKey: string): Promise<KeyHolder | undefined> {
  const { rows } = await db.query<Tenant & { key_id: string }>(
    `WITH touched AS (
       UPDATE api_keys SET last_used_at = now()
        WHERE key_hash = $1 AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
        RETURNING id)
     SELECT t.id, t.name, t.created_at, k.id AS key_id FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
      WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
    [hashApiKey(apiKey)],
  );
  const row = rows[0];
  return row === undefined
    ? undefined
    : { tenant: { id: row.id, name: row.name, created_at: row.created_at }, keyId: row.key_id };
}

/** Whether an API key (by id) is still live: a console session signed in with it ends when it is revoked. */
export async function apiKeyLive(db: Queryable, keyId: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL', [keyId]);
  return rows.length > 0;
}

export async function getTenant(db: Queryable, id: string): Promise<Tenant | undefined> {
  const { rows } = await db.query<Tenant>('SELECT id, name, created_at FROM tenants WHERE id = $1', [id]);
  return rows[0];
}

export async function countTenants(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants');
  return rows[0]?.n ?? 0;
}

export async function listTenants(db: Queryable): Promise<Tenant[]> {
  const { rows } = await db.query<Tenant>('SELECT id, name, created_at FROM tenants ORDER BY created_at');
  return rows;
}
