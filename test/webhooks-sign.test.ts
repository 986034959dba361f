/** Standard Webhooks signatures: known answers, cross-checked with the independent standardwebhooks library. */
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify as edVerify } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import {
  generateSigningKey,
  privateKeyOf,
  secretBytes,
  signV1,
  signV1a,
  webhookHeaders,
} from '../src/webhooks/sign.ts';

describe('v1 signatures (HMAC-SHA256)', () => {
  // The Standard Webhooks specification's own example, and one of ours; both cross-checked with standardwebhooks.
  const vectors = [
    {
      secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      ts: 1614265330,
      body: '{"test": 2432232314}',
      sig: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    },
    {
      secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      id: 'msg_2b7f0c1e9d4a4c33a1f0e8d6b5c4a321',
      ts: 1735689600,
      body: '{"type":"job.completed"}',
      sig: 'v1,TsYbk/Fcv56mQeL/xvprmdTIJkh+DkTlwuhkH+yJsPg=',
    },
  ];

  it.each(vectors)('signs $id to its known answer, as standardwebhooks does', ({ secret, id, ts, body, sig }) => {
    expect(signV1(secret, id, ts, body)).toBe(sig);
    expect(new Webhook(secret).sign(id, new Date(ts * 1000), body)).toBe(sig);
  });

  it('puts one entry per active secret in webhook-signature, each verifying on its own', () => {
    const a = 'whsec_' + Buffer.alloc(32, 1).toString('base64');
    const b = 'whsec_' + Buffer.alloc(32, 2).toString('base64');
    const ts = Math.floor(Date.now() / 1000);
    const body = '{"type":"job.failed"}';
    const headers = webhookHeaders({ scheme: 'v1', secrets: [a, b] }, 'msg_x', ts, body);
    expect(headers['webhook-signature']?.split(' ')).toHaveLength(2);
    expect(new Webhook(a).verify(body, headers)).toEqual({ type: 'job.failed' });
    expect(new Webhook(b).verify(body, headers)).toEqual({ type: 'job.failed' });
    expect(() => new Webhook(a).verify(body + ' ', headers)).toThrow();
  });
});

describe('v1a signatures (Ed25519)', () => {
  // RFC 8032 test 1's key pair; Ed25519 is deterministic, so the signature of fixed content is fixed.
  const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
  const pub = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
  const jwk = { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: pub.toString('base64url') };

  it('signs id.timestamp.body to a known answer that verifies with the public JWK', () => {
    const key = createPrivateKey({ key: jwk, format: 'jwk' });
    const entry = signV1a(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
    expect(entry).toBe(KNOWN_V1A);
    const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
    const sig = Buffer.from(entry.slice('v1a,'.length), 'base64');
    expect(
      edVerify(null, Buffer.from('msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}'), publicKey, sig),
    ).toBe(true);
  });

  it('generates keys whose kid is the JWK thumbprint and whose whpk_ form is the raw public key', async () => {
    const k = await generateSigningKey();
    expect(k.publicJwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid: k.kid, alg: 'EdDSA', use: 'sig' });
    expect(Buffer.from(k.publicKey.slice('whpk_'.length), 'base64')).toEqual(
      Buffer.from(k.publicJwk.x ?? '', 'base64url'),
    );
    expect(k.publicJwk).not.toHaveProperty('d');
  });
});
const KNOWN_V1A = 'v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==';

describe('signature headers', () => {
  it('puts one v1a entry per active key in webhook-signature, each verifying with its public key', () => {
    const keys = [generateKeyPairSync('ed25519'), generateKeyPairSync('ed25519')];
    const body = '{"type":"job.completed"}';
    const headers = webhookHeaders({ scheme: 'v1a', keys: keys.map((k) => k.privateKey) }, 'msg_y', 1735689600, body);
    expect(headers['webhook-id']).toBe('msg_y');
    expect(headers['webhook-timestamp']).toBe('1735689600');
    const entries = headers['webhook-signature']?.split(' ') ?? [];
    expect(entries).toHaveLength(2);
    keys.forEach(({ publicKey }, i) => {
      const [scheme, sig] = (entries[i] ?? '').split(',');
      expect(scheme).toBe('v1a');
      const content = Buffer.from(`msg_y.1735689600.${body}`);
      expect(edVerify(null, content, publicKey, Buffer.from(sig ?? '', 'base64'))).toBe(true);
    });
  });

  it('reads a secret with or without its whsec_ prefix', () => {
    const raw = Buffer.alloc(24, 7);
    expect(secretBytes('whsec_' + raw.toString('base64'))).toEqual(raw);
    expect(secretBytes(raw.toString('base64'))).toEqual(raw);
    const id = 'msg_1';
    expect(signV1(raw.toString('base64'), id, 1, '{}')).toBe(signV1('whsec_' + raw.toString('base64'), id, 1, '{}'));
  });

  it('signs with each of many secrets its own signature, as standardwebhooks computes it', () => {
    const body = '{"n":1}';
    for (let i = 0; i < 50; i++) {
      const secret = 'whsec_' + Buffer.alloc(32, i).toString('base64');
      const entry = signV1(secret, `msg_${i}`, 1735689600 + i, body);
      expect(entry).toBe(new Webhook(secret).sign(`msg_${i}`, new Date((1735689600 + i) * 1000), body));
    }
  });

  it('parses a private key once per kid: the key a kid names does not change', async () => {
    const a = await generateSigningKey();
    const b = await generateSigningKey();
    const key = privateKeyOf(a.kid, a.privatePem);
    expect(key.asymmetricKeyType).toBe('ed25519');
    const entry = signV1a(privateKeyOf(b.kid, b.privatePem), 'msg_z', 1, '{}');
    expect(privateKeyOf(a.kid, b.privatePem)).toBe(key);
    const publicKey = createPublicKey({ key: b.publicJwk, format: 'jwk' });
    const sig = Buffer.from(entry.slice('v1a,'.length), 'base64');
    expect(edVerify(null, Buffer.from('msg_z.1.{}'), publicKey, sig)).toBe(true);
  });
});
