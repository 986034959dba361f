/**
 * Standard Webhooks signatures. The signed content is `${webhook-id}.${webhook-timestamp}.${body}`;
 * `v1` is HMAC-SHA256 with the `whsec_` secret's bytes, `v1a` is Ed25519. The `webhook-signature`
 * header carries one space-separated `scheme,base64` entry per active secret or key (rotation).
 */
import {
  createHmac,
  createPrivateKey,
  createSecretKey,
  generateKeyPairSync,
  sign as edSign,
  type KeyObject,
} from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

export const SECRET_PREFIX = 'whsec_';
export const PUBLIC_KEY_PREFIX = 'whpk_';

/** The key bytes of a `whsec_` secret. */
export function secretBytes(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
}

function signedContent(id: string, timestamp: number, body: string): string {
  return `${id}.${timestamp}.${body}`;
}

/** HMAC keys are made once per secret: building a key from raw bytes on every signature costs more than the HMAC. */
const hmacKeys = new Map<string, KeyObject>();
/** Bound on the cache of HMAC keys (one per active secret; this only guards against growth). */
const MAX_HMAC_KEYS = 10_000;

function hmacKeyOf(secret: string): KeyObject {
  let key = hmacKeys.get(secret);
  if (key === undefined) {
    key = createSecretKey(secretBytes(secret));
    if (hmacKeys.size >= MAX_HMAC_KEYS) hmacKeys.clear();
    hmacKeys.set(secret, key);
  }
  return key;
}

/** One `v1,<base64>` entry. */
export function signV1(secret: string, id: string, timestamp: number, body: string): string {
  return (
    'v1,' +
    createHmac('sha256', hmacKeyOf(secret))
      .update(signedContent(id, timestamp, body))
      .digest('base64')
  );
}

/** One `v1a,<base64>` entry (Ed25519). */
export function signV1a(privateKey: KeyObject, id: string, timestamp: number, body: string): string {
  return 'v1a,' + edSign(null, Buffer.from(signedContent(id, timestamp, body)), privateKey).toString('base64');
}

/** What a delivery is signed with: the tenant's scheme and every active secret or key. */
export type Signer = { scheme: 'v1'; secrets: string[] } | { scheme: 'v1a'; keys: KeyObject[] };

/** The three Standard Webhooks headers of one attempt. */
export function webhookHeaders(signer: Signer, id: string, timestamp: number, body: string): Record<string, string> {
  const entries =
    signer.scheme === 'v1'
      ? signer.secrets.map((s) => signV1(s, id, timestamp, body))
      : signer.keys.map((k) => signV1a(k, id, timestamp, body));
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': entries.join(' ') };
}

/** Private keys are parsed once per process; a PEM is immutable for its kid. */
const parsedKeys = new Map<string, KeyObject>();
/** Bound on the cache of parsed keys (rotations are rare; this only guards against growth). */
const MAX_PARSED_KEYS = 10_000;

export function privateKeyOf(kid: string, pem: string): KeyObject {
  let key = parsedKeys.get(kid);
  if (key === undefined) {
    key = createPrivateKey(pem);
    if (parsedKeys.size >= MAX_PARSED_KEYS) parsedKeys.clear();
    parsedKeys.set(kid, key);
  }
  return key;
}

export interface GeneratedKeyPair {
  kid: string;
  privatePem: string;
  publicJwk: JWK;
  /** Standard Webhooks form of the public key: `whpk_` + base64 of its raw 32 bytes. */
  publicKey: string;
}

/** A new Ed25519 key pair for v1a, its kid being the JWK thumbprint (RFC 7638) of the public key. */
export async function generateSigningKey(): Promise<GeneratedKeyPair> {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return {
    kid,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicJwk: { ...jwk, kid, alg: 'EdDSA', use: 'sig' },
    publicKey: PUBLIC_KEY_PREFIX + Buffer.from(jwk.x ?? '', 'base64url').toString('base64'),
  };
}
