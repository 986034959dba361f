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

/** Adds another API key to a tenant (keys are shown once: the caller must hand it over now). */
export async function createApiKey(db: Queryable, tenantId: string): Promise<string> {
  const apiKey = generateApiKey();
  await db.query('INSERT INTO api_keys (tenant_id, key_hash, key_prefix) VALUES ($1, $2, $3)', [
    tenantId,
    hashApiKey(apiKey),
    apiKey.slice(0, 10),
  ]);
  return apiKey;
}

export async function tenantByApiKey(db: Queryable, apiKey: string): Promise<Tenant | undefined> {
  const { rows } = await db.query<Tenant>(
    `SELECT t.id, t.name, t.created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
      WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
    [hashApiKey(apiKey)],
  );
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
