/** Webhook building blocks without a database: signatures (known answers), SSRF rules, retry schedule, breaker window. */
import { createPrivateKey, createPublicKey, verify as edVerify } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import { OutcomeWindow } from '../src/webhooks/breaker-window.ts';
import { nextDelaySeconds, parseRetryAfter } from '../src/webhooks/schedule.ts';
import { WebhookSender } from '../src/webhooks/send.ts';
import { generateSigningKey, signV1, signV1a, webhookHeaders } from '../src/webhooks/sign.ts';
import { addressProblem } from '../src/webhooks/ssrf.ts';

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

describe('SSRF rules', () => {
  const none = new CallbackAllowList([]);
  it.each([
    '127.0.0.1',
    '127.8.9.10',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.100.100.200',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd00:ec2::254',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:a9fe:a9fe',
    '::ffff:0:7f00:1',
    '::ffff:0:127.0.0.1',
    '64:ff9b::7f00:1',
    '64:ff9b:1::a00:1',
  ])('refuses %s', (address) => {
    expect(addressProblem(address, none)).toMatch(/loopback|private|link-local|multicast|reserved|metadata/);
  });

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])('allows %s', (address) => {
    expect(addressProblem(address, none)).toBeUndefined();
  });

  it('lets listed addresses, nets and hosts through', () => {
    const allow = new CallbackAllowList(['127.0.0.1', '10.0.0.0/8', 'receiver.internal']);
    expect(addressProblem('127.0.0.1', allow)).toBeUndefined();
    expect(addressProblem('10.9.8.7', allow)).toBeUndefined();
    expect(addressProblem('127.0.0.2', allow)).toBeDefined();
    expect(allow.allowsHost('receiver.internal')).toBe(true);
  });

  it('refuses at connect time: a name that resolves to loopback, and literal private addresses, never reach the socket', async () => {
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const sender = new WebhookSender({
      allow: none,
      timeoutSeconds: 2,
      connectTimeoutSeconds: 1,
      connectionsPerEndpoint: 2,
    });
    try {
      // https to any host is accepted when the URL is saved; the address is only known at connect time.
      const byName = await sender.send(`https://localhost:${port}/hook`, {}, '{}');
      expect(byName.kind).toBe('refused');
      expect(byName.error).toMatch(/refused to connect to localhost/);
      for (const url of [
        `https://127.0.0.1:${port}/`,
        'https://[::1]/',
        'https://169.254.169.254/latest/meta-data/',
        `http://127.0.0.1:${port}/`,
      ]) {
        const r = await sender.send(url, {}, '{}');
        expect(r.kind, url).toBe('refused');
      }
      expect(hits).toBe(0);
      // The allow-list opens the door.
      const allowed = new WebhookSender({
        allow: new CallbackAllowList(['127.0.0.1']),
        timeoutSeconds: 2,
        connectTimeoutSeconds: 1,
        connectionsPerEndpoint: 2,
      });
      expect((await allowed.send(`http://127.0.0.1:${port}/`, {}, '{}')).kind).toBe('success');
      await allowed.close();
      expect(hits).toBe(1);
    } finally {
      await sender.close();
      server.close();
    }
  });
});

describe('retry schedule', () => {
  const policy = {
    scheduleSeconds: [5, 300, 1800, 7200, 18000, 36000, 36000],
    jitter: 0.2,
    minBackoffAfterThrottleSeconds: 60,
  };

  it('follows the default schedule for 8 attempts (about 27 h) with ±20 % jitter, then stops', () => {
    let total = 0;
    for (let attempt = 1; attempt <= 7; attempt++) {
      const base = policy.scheduleSeconds[attempt - 1] ?? 0;
      const low = nextDelaySeconds(policy, { attempt, throttled: false }, () => 0);
      const high = nextDelaySeconds(policy, { attempt, throttled: false }, () => 1);
      expect(low).toBeCloseTo(base * 0.8);
      expect(high).toBeCloseTo(base * 1.2);
      total += base;
    }
    expect(Math.floor(total / 3600)).toBe(27);
    expect(nextDelaySeconds(policy, { attempt: 8, throttled: false })).toBeUndefined();
  });

  it('waits at least 60 s after a timeout or 429', () => {
    expect(nextDelaySeconds(policy, { attempt: 1, throttled: true }, () => 0.5)).toBe(60);
    expect(nextDelaySeconds(policy, { attempt: 2, throttled: true }, () => 0.5)).toBe(300);
  });

  it('honours Retry-After within bounds: longer waits up to the longest delay, never shorter than the schedule', () => {
    expect(nextDelaySeconds(policy, { attempt: 1, throttled: false, retryAfterSeconds: 120 }, () => 0.5)).toBe(120);
    expect(nextDelaySeconds(policy, { attempt: 1, throttled: false, retryAfterSeconds: 10 ** 9 }, () => 0.5)).toBe(
      36000,
    );
    expect(nextDelaySeconds(policy, { attempt: 3, throttled: false, retryAfterSeconds: 1 }, () => 0.5)).toBe(1800);
    expect(parseRetryAfter('30')).toBe(30);
    expect(parseRetryAfter(new Date(Date.now() + 90_000).toUTCString())).toBeGreaterThan(85);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('breaker window', () => {
  const s = { window: 4, failureRatio: 0.5, minRequests: 3, cooldownSeconds: 1 };
  it('opens when most recent outcomes failed, with enough of them', () => {
    const w = new OutcomeWindow(s.window);
    w.record(false);
    w.record(false);
    expect(w.shouldOpen(s)).toBe(false);
    w.record(true);
    expect(w.shouldOpen(s)).toBe(true);
    for (let i = 0; i < 4; i++) w.record(true);
    expect(w.failures).toBe(0);
    expect(w.shouldOpen(s)).toBe(false);
  });
});

describe('alert webhook sink', () => {
  it('posts raised alerts signed the Standard Webhooks way with LONGHAUL_ALERT_WEBHOOK_SECRET', async () => {
    const { signedWebhookAlertSink } = await import('../src/webhooks/alert-sink.ts');
    const { startReceiver } = await import('./support/receiver.ts');
    const rx = await startReceiver();
    try {
      const secret = 'whsec_' + Buffer.alloc(32, 9).toString('base64');
      const sink = signedWebhookAlertSink(`${rx.url}/alerts`, secret);
      await sink.send({
        state: 'raised',
        key: 'delivery-dead:x',
        kind: 'delivery-dead',
        message: 'dead',
        details: { attempts: 8 },
        raisedAt: new Date(),
        clearedAt: null,
      });
      const got = rx.to('/alerts')[0];
      if (got === undefined) throw new Error('nothing received');
      const event = new Webhook(secret).verify(got.body, got.headers as Record<string, string>) as {
        type: string;
        data: { key: string };
      };
      expect(event.type).toBe('alert.raised');
      expect(event.data.key).toBe('delivery-dead:x');
      rx.on('/fail', (_n, _r, res) => void res.writeHead(500).end());
      await expect(
        signedWebhookAlertSink(`${rx.url}/fail`, secret).send({
          state: 'cleared',
          key: 'k',
          kind: 'k',
          message: 'm',
          details: {},
          raisedAt: new Date(),
          clearedAt: new Date(),
        }),
      ).rejects.toThrow(/500/);
    } finally {
      await rx.close();
    }
  });
});
