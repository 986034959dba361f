/**
 * Short-lived signed tokens (JWT, HS256, jose) for links that must work without the API key: artifact
 * download URLs and browser stream tokens. The key is LONGHAUL_SIGNING_SECRET, or a random one created
 * once in the database so that every API process verifies what any other signed.
 */
import { randomBytes } from 'node:crypto';
import { jwtVerify, SignJWT, errors as joseErrors } from 'jose';
import type { Queryable } from '../db/pool.ts';

/** Issuer of every token; audiences separate their uses (a stream token is no download link). */
const ISSUER = 'longhaul';
const KEY_NAME = 'token-signing';

export type TokenAudience = 'artifact' | 'stream' | 'console';

export interface TokenClaims {
  /** Tenant the token acts for. */
  sub: string;
  [claim: string]: unknown;
}

export class TokenError extends Error {
  override name = 'TokenError';
}

export class TokenSigner {
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    this.#key = key;
  }

  /** Loads the configured secret, or the database's (creating it on first use). */
  static async load(db: Queryable, configured: string | undefined): Promise<TokenSigner> {
    if (configured !== undefined) return new TokenSigner(new TextEncoder().encode(configured));
    await db.query('INSERT INTO service_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
      KEY_NAME,
      randomBytes(32),
    ]);
    const { rows } = await db.query<{ secret: Buffer }>('SELECT secret FROM service_keys WHERE name = $1', [KEY_NAME]);
    const secret = rows[0]?.secret;
    if (secret === undefined) throw new Error('token signing key missing');
    return new TokenSigner(new Uint8Array(secret));
  }

  async sign(
    audience: TokenAudience,
    claims: TokenClaims,
    ttlSeconds: number,
  ): Promise<{ token: string; expiresAt: Date }> {
    const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(this.#key);
    return { token, expiresAt };
  }

  /** Verifies signature, issuer, audience and expiry; throws TokenError with the reason otherwise. */
  async verify(audience: TokenAudience, token: string): Promise<TokenClaims> {
    try {
      const { payload } = await jwtVerify(token, this.#key, { issuer: ISSUER, audience, algorithms: ['HS256'] });
      if (typeof payload.sub !== 'string') throw new TokenError('token has no subject');
      return payload as TokenClaims;
    } catch (err) {
      if (err instanceof TokenError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new TokenError('token expired');
      throw new TokenError('token is not valid');
    }
  }
}
