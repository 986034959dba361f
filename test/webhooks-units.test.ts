/**
 * Webhook parts that need sockets but no database: the SSRF refusal at connect time through the sender,
 * and the alert sink. The pure parts have their own files (webhooks-sign, -ssrf, -schedule, -breaker-window).
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import { WebhookSender } from '../src/webhooks/send.ts';

describe('SSRF rules at connect time', () => {
  const none = new CallbackAllowList([]);
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
