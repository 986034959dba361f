/**
 * Verifies longhaul's Standard Webhooks: `v1` (HMAC-SHA256 with a `whsec_` secret) through the
 * `standardwebhooks` package, and `v1a` (Ed25519) with WebCrypto against the service's JWKS, fetched
 * and cached. Runs in Node 20+ and browsers alike.
 */
import { Webhook } from 'standardwebhooks';
import { WebhookVerificationError } from './errors.ts';
import type { webhooks } from './openapi.ts';

/** The body of a verified webhook: `job.completed`, `job.failed` or `job.cancelled`, with the job. */
export type WebhookEvent = {
  [K in keyof webhooks]: NonNullable<webhooks[K]['post']['requestBody']>['content']['application/json'];
}[keyof webhooks];

export type HeadersLike = Headers | Record<string, string | string[] | undefined>;

export interface WebhookVerifierOptions {
  /** The tenant's `whsec_` secret(s), for `v1`. Give the old and the new one during a rotation. */
  secrets?: string | string[];
  /** Where the `v1a` public keys are: the service's `/.well-known/jwks.json`. */
  jwksUrl?: string;
  fetch?: typeof fetch;
  /** How far the `webhook-timestamp` may be from now. (Default: 300 s, as Standard Webhooks says) */
  toleranceSeconds?: number;
  /** How long a fetched JWKS is used before it is fetched again. (Default: 300 s) */
  jwksMaxAgeSeconds?: number;
}

interface Jwk {
  kty: string;
  crv?: string;
  x?: string;
  kid?: string;
}

/** WebCrypto's key type, named alike by the DOM and Node's typings. */
type VerifyKey = Awaited<ReturnType<typeof crypto.subtle.importKey>>;

/** After a failed match, a JWKS older than this is fetched again at once (the key may have rotated). */
const REFETCH_AFTER_MS = 30_000;

function lowerCased(headers: HeadersLike): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers instanceof Headers) headers.forEach((v, k) => (out[k.toLowerCase()] = v));
  else
    for (const [k, v] of Object.entries(headers)) {
      if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
    }
  return out;
}

function base64Bytes(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class WebhookVerifier {
  readonly #secrets: string[];
  readonly #jwksUrl: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #tolerance: number;
  readonly #maxAgeMs: number;
  #jwks: { keys: VerifyKey[]; at: number } | undefined;

  constructor(opts: WebhookVerifierOptions) {
    this.#secrets = opts.secrets === undefined ? [] : Array.isArray(opts.secrets) ? opts.secrets : [opts.secrets];
    this.#jwksUrl = opts.jwksUrl;
    this.#fetch = opts.fetch ?? ((...args) => fetch(...args));
    this.#tolerance = opts.toleranceSeconds ?? 300;
    this.#maxAgeMs = (opts.jwksMaxAgeSeconds ?? 300) * 1000;
  }

  /**
   * Checks the signature and timestamp of one delivery and returns its parsed body. `rawBody` must be
   * the bytes as received (not re-serialised JSON). Throws WebhookVerificationError when it does not verify.
   */
  async verify(rawBody: string | Uint8Array, headers: HeadersLike): Promise<WebhookEvent> {
    const body = typeof rawBody === 'string' ? rawBody : new TextDecoder().decode(rawBody);
    const h = lowerCased(headers);
    const id = h['webhook-id'];
    const timestamp = h['webhook-timestamp'];
    const signature = h['webhook-signature'];
    if (id === undefined || timestamp === undefined || signature === undefined)
      throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
    const entries = signature.split(' ').map((e) => e.split(',', 2) as [string, string | undefined]);
    if (entries.some(([scheme]) => scheme === 'v1') && this.#secrets.length > 0) {
      for (const secret of this.#secrets) {
        try {
          new Webhook(secret).verify(body, h);
          return JSON.parse(body) as WebhookEvent;
        } catch {
          // The next secret may be the one (rotation).
        }
      }
      throw new WebhookVerificationError('no v1 signature matches the secrets');
    }
    const v1a = entries.filter(([scheme, sig]) => scheme === 'v1a' && sig !== undefined).map(([, sig]) => sig ?? '');
    if (v1a.length === 0 || this.#jwksUrl === undefined)
      throw new WebhookVerificationError('no signature this verifier can check (give secrets for v1, jwksUrl for v1a)');
    const ts = Number(timestamp);
    if (!Number.isInteger(ts) || Math.abs(Date.now() / 1000 - ts) > this.#tolerance)
      throw new WebhookVerificationError('webhook-timestamp is missing or too far from now');
    const content = new TextEncoder().encode(`${id}.${timestamp}.${body}`);
    if (await this.#anyMatches(v1a, content, false)) return JSON.parse(body) as WebhookEvent;
    throw new WebhookVerificationError('no v1a signature matches the published keys');
  }

  async #anyMatches(signatures: string[], content: Uint8Array<ArrayBuffer>, refetched: boolean): Promise<boolean> {
    const keys = await this.#keys(refetched);
    for (const sig of signatures) {
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = base64Bytes(sig);
      } catch {
        continue;
      }
      for (const key of keys) if (await crypto.subtle.verify('Ed25519', key, bytes, content)) return true;
    }
    const cached = this.#jwks;
    if (!refetched && cached !== undefined && Date.now() - cached.at > REFETCH_AFTER_MS)
      return this.#anyMatches(signatures, content, true);
    return false;
  }

  async #keys(refresh: boolean): Promise<VerifyKey[]> {
    const cached = this.#jwks;
    if (!refresh && cached !== undefined && Date.now() - cached.at < this.#maxAgeMs) return cached.keys;
    const res = await this.#fetch(this.#jwksUrl ?? '', { headers: { accept: 'application/json' } });
    if (!res.ok) throw new WebhookVerificationError(`could not fetch the JWKS: HTTP ${res.status}`);
    const { keys } = (await res.json()) as { keys: Jwk[] };
    const imported = await Promise.all(
      keys
        .filter((k) => k.kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string')
        .map((k) =>
          crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: k.x }, { name: 'Ed25519' }, false, [
            'verify',
          ]),
        ),
    );
    this.#jwks = { keys: imported, at: Date.now() };
    return imported;
  }
}
