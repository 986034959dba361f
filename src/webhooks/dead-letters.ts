/**
 * Dead-lettering of recorded attempts: a delivery that went DEAD is counted, logged and raises an
 * operator alert; a replayed one that then succeeded clears it. Recording never waits for the alerts: a
 * sink calls the network (up to 10 s each), and results waiting that long to be recorded would outlive
 * their leases and be sent again. Raises and clears go one at a time and in order, so a clear never
 * overtakes its raise and a burst of dead deliveries does not flood the sinks or the pool.
 */
import type { Alerts } from '../alerts/alerts.ts';
import type { Logger } from '../observability/logger.ts';
import type { RecordedAttempt } from './attempt-recorder.ts';
import type { WebhookMetrics } from './metrics.ts';

export class DeadLetters {
  readonly #metrics: WebhookMetrics;
  readonly #log: Logger;
  readonly #alerts: Alerts | undefined;
  /** The queue of alert raises and clears. */
  #alerting: Promise<void> = Promise.resolve();

  constructor(metrics: WebhookMetrics, log: Logger, alerts: Alerts | undefined) {
    this.#metrics = metrics;
    this.#log = log;
    this.#alerts = alerts;
  }

  /** Takes note of a recorded attempt: it may have made its delivery DEAD, or delivered a replay. */
  recorded(r: RecordedAttempt): void {
    if (r.status === 'DEAD') this.#dead(r);
    else if (r.status === 'SUCCEEDED' && r.replayed)
      this.#alert('clearing the dead-delivery alert', (alerts) => alerts.clear(`delivery-dead:${r.id}`));
  }

  /** Resolves once the alerts queued so far have gone out (before the caller closes the pool). */
  async settled(): Promise<void> {
    await this.#alerting;
  }

  #dead(r: RecordedAttempt): void {
    this.#metrics.dead.inc();
    this.#log.warn(
      {
        delivery: r.id,
        webhook_id: r.webhookId,
        job_id: r.jobId,
        endpoint: r.endpoint,
        attempts: r.attempt,
        error: r.error,
      },
      'webhook delivery DEAD',
    );
    this.#alert('raising the dead-delivery alert', (alerts) =>
      alerts.raise(`delivery-dead:${r.id}`, {
        kind: 'delivery-dead',
        message: `webhook delivery ${r.webhookId} of job ${r.jobId} to ${r.endpoint} is DEAD after ${r.attempt} attempt(s): ${r.error ?? 'failed'}`,
        details: {
          delivery_id: r.id,
          webhook_id: r.webhookId,
          job_id: r.jobId,
          tenant_id: r.tenantId,
          endpoint: r.endpoint,
          attempts: r.attempt,
          error: r.error,
          status_code: r.statusCode,
        },
      }),
    );
  }

  #alert(what: string, send: (alerts: Alerts) => Promise<boolean>): void {
    const alerts = this.#alerts;
    if (alerts === undefined) return;
    this.#alerting = this.#alerting
      .then(() => send(alerts))
      .then(
        () => undefined,
        (err: unknown) => this.#log.warn({ err }, `webhook dispatcher: ${what} failed`),
      );
  }
}
