/**
 * An alert sink that POSTs each raised or cleared alert to LONGHAUL_ALERT_WEBHOOK_URL as a Standard
 * Webhooks event (`alert.raised` / `alert.cleared`), signed v1 with LONGHAUL_ALERT_WEBHOOK_SECRET, so the
 * operator's receiver verifies it with any Standard Webhooks library. The URL is the operator's own
 * configuration, so it is not subject to the callback SSRF filter.
 */
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import type { AlertEvent, AlertSink } from '../alerts/alerts.ts';
import { webhookHeaders } from './sign.ts';

/** An alert that cannot be delivered within this time is logged as a failed sink and dropped. */
const ALERT_TIMEOUT_MS = 10_000;

export function signedWebhookAlertSink(url: string, secret: string): AlertSink {
  return {
    name: 'alert-webhook',
    async send(event: AlertEvent): Promise<void> {
      const body = JSON.stringify({
        type: `alert.${event.state}`,
        timestamp: new Date().toISOString(),
        data: {
          key: event.key,
          kind: event.kind,
          message: event.message,
          details: event.details,
          raised_at: event.raisedAt.toISOString(),
          cleared_at: event.clearedAt?.toISOString() ?? null,
        },
      });
      const id = `msg_${randomUUID().replaceAll('-', '')}`;
      const res = await request(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'longhaul-alerts/1',
          ...webhookHeaders({ scheme: 'v1', secrets: [secret] }, id, Math.floor(Date.now() / 1000), body),
        },
        body,
        // undici does not follow redirects unless asked to: a 3xx is a failure here too.
        signal: AbortSignal.timeout(ALERT_TIMEOUT_MS),
      });
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`alert webhook answered ${res.statusCode}`);
    },
  };
}
