/**
 * A tenant's signing material: Ed25519 key pairs for v1a, the chosen scheme, rotation with a grace
 * period, and the public JWKS; the `whsec_` secrets for v1 are created with the tenant and rotated in
 * src/tenants/repository.ts, which owns their table. During a grace period every delivery carries one
 * signature per active secret or key.
 */
import type { JWK } from 'jose';
import { withTransaction, type Pool, type Queryable } from '../db/pool.ts';
import { activeSecrets, type SecretInfo } from '../tenants/repository.ts';
import { generateSigningKey, PUBLIC_KEY_PREFIX } from './sign.ts';

export type SignatureScheme = 'v1' | 'v1a';

export interface SigningKeyInfo {
  kid: string;
  /** `whpk_` + base64 of the raw Ed25519 public key (the Standard Webhooks form). */
  public_key: string;
  public_jwk: PublicJwk;
  created_at: Date;
  expires_at: Date | null;
}

function publicKeyOf(jwk: JWK): string {
  return PUBLIC_KEY_PREFIX + Buffer.from(jwk.x ?? '', 'base64url').toString('base64');
}

export async function activeSigningKeys(db: Queryable, tenantId: string): Promise<SigningKeyInfo[]> {
  const { rows } = await db.query<Omit<SigningKeyInfo, 'public_key'>>(
    `SELECT kid, public_jwk, created_at, expires_at FROM webhook_signing_keys
      WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC`,
    [tenantId],
  );
  return rows.map((r) => ({ ...r, public_key: publicKeyOf(r.public_jwk) }));
}

/** Adds a new Ed25519 key; the other active keys stay valid for `graceSeconds` more. */
export async function rotateSigningKey(db: Queryable, tenantId: string, graceSeconds: number): Promise<SigningKeyInfo> {
  const key = await generateSigningKey();
  const { rows } = await db.query<{ created_at: Date }>(
    `WITH old AS (
       UPDATE webhook_signing_keys SET expires_at = now() + make_interval(secs => $5)
        WHERE tenant_id = $2 AND (expires_at IS NULL OR expires_at > now() + make_interval(secs => $5)))
     INSERT INTO webhook_signing_keys (kid, tenant_id, private_pem, public_jwk) VALUES ($1, $2, $3, $4) RETURNING created_at`,
    [key.kid, tenantId, key.privatePem, JSON.stringify(key.publicJwk), graceSeconds],
  );
  return {
    kid: key.kid,
    public_key: key.publicKey,
    public_jwk: key.publicJwk as PublicJwk,
    created_at: rows[0]?.created_at ?? new Date(),
    expires_at: null,
  };
}

export async function signatureScheme(db: Queryable, tenantId: string): Promise<SignatureScheme> {
  const { rows } = await db.query<{ scheme: SignatureScheme }>(
    'SELECT scheme FROM webhook_settings WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0]?.scheme ?? 'v1';
}

/** Sets the scheme; choosing v1a creates the tenant's first Ed25519 key if it has none. */
export async function setSignatureScheme(db: Queryable, tenantId: string, scheme: SignatureScheme): Promise<void> {
  await db.query(
    `INSERT INTO webhook_settings (tenant_id, scheme) VALUES ($1, $2)
     ON CONFLICT (tenant_id) DO UPDATE SET scheme = EXCLUDED.scheme, updated_at = now()`,
    [tenantId, scheme],
  );
  if (scheme === 'v1a' && (await activeSigningKeys(db, tenantId)).length === 0) await rotateSigningKey(db, tenantId, 0);
}

export interface SigningSettings {
  scheme: SignatureScheme;
  secrets: SecretInfo[];
  signingKeys: SigningKeyInfo[];
}

/** The tenant's scheme with the secrets and keys that sign its deliveries now. */
export async function signingSettings(db: Queryable, tenantId: string): Promise<SigningSettings> {
  return {
    scheme: await signatureScheme(db, tenantId),
    secrets: await activeSecrets(db, tenantId),
    signingKeys: await activeSigningKeys(db, tenantId),
  };
}

/** Sets the scheme in a transaction of its own (with v1a's first key when needed); returns the settings. */
export async function chooseSignatureScheme(
  pool: Pool,
  tenantId: string,
  scheme: SignatureScheme,
): Promise<SigningSettings> {
  await withTransaction(pool, (client) => setSignatureScheme(client, tenantId, scheme));
  return signingSettings(pool, tenantId);
}

/** A v1a public key as published: what generateSigningKey makes (sign.ts). */
export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

/** Every active v1a public key of every tenant, as a JWKS (public keys are not secret). */
export async function publicJwks(db: Queryable): Promise<{ keys: PublicJwk[] }> {
  const { rows } = await db.query<{ public_jwk: PublicJwk }>(
    `SELECT public_jwk FROM webhook_signing_keys WHERE expires_at IS NULL OR expires_at > now() ORDER BY created_at, kid`,
  );
  return { keys: rows.map((r) => r.public_jwk) };
}
