/**
 * Sending one attempt of a claimed delivery: signed with its tenant's current secrets or keys (read by
 * the claim statement, so never stale), inside a span that continues the job's trace. It never throws
 * for the receiver's sake: every outcome is an AttemptResult. A tenant with nothing to sign with fails
 * the attempt without a request, and `signed` says so: that failure says nothing about the endpoint.
 */
import { webhookAttemptSpan } from '../observability/tracing.ts';
import type { WebhookMetrics } from './metrics.ts';
import type { AttemptResult, WebhookSender } from './send.ts';
import { privateKeyOf, webhookHeaders, type Signer } from './sign.ts';
import type { ClaimedDelivery } from './store.ts';

function signerOf(row: ClaimedDelivery): Signer | undefined {
  if (row.scheme === 'v1a' && row.key_pems.length > 0) {
    return { scheme: 'v1a', keys: row.key_pems.map((pem, i) => privateKeyOf(row.key_ids[i] ?? String(i), pem)) };
  }
  if (row.secrets.length > 0) return { scheme: 'v1', secrets: row.secrets };
  return undefined;
}

export async function sendAttempt(
  sender: WebhookSender,
  metrics: WebhookMetrics,
  row: ClaimedDelivery,
  startedAt: Date,
): Promise<{ result: AttemptResult; signed: boolean }> {
  if (row.attempts_made === 0 && !row.replayed)
    metrics.firstAttemptLag.observe(Math.max(0, startedAt.getTime() - row.created_at.getTime()) / 1000);
  const signer = signerOf(row);
  const result: AttemptResult =
    signer === undefined
      ? {
          kind: 'failed',
          statusCode: null,
          error: 'the tenant has no active webhook secret or signing key',
          response: null,
          durationMs: 0,
          retryAfterSeconds: undefined,
        }
      : await webhookAttemptSpan(
          row.trace_context,
          { url: row.url, deliveryId: row.id, attempt: row.attempts_made + 1 },
          (traceHeaders) =>
            sender.send(
              row.url,
              {
                ...traceHeaders,
                ...webhookHeaders(signer, row.webhook_id, Math.floor(Date.now() / 1000), row.payload),
              },
              row.payload,
            ),
        );
  return { result, signed: signer !== undefined };
}
