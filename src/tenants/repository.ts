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
export function generateWebhookSecret(): string {
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
