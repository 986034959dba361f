/** A real webhook dispatcher over a test service's database and settings (its own, not the service's worker role). */
import type { Config } from '../../src/config.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { CallbackAllowList } from '../../src/webhooks/allowlist.ts';
import { Dispatcher } from '../../src/webhooks/dispatcher.ts';
import type { TestService } from './service.ts';

/** `settings` override the service's for this dispatcher only, so that one test file can hold dispatchers set apart. */
export async function startDispatcher(
  t: TestService,
  drainSeconds: number,
  settings: Partial<Config['webhooks']> = {},
): Promise<Dispatcher> {
  const dispatcher = new Dispatcher({
    pool: t.service.pool,
    listener: t.service.listener,
    settings: { ...t.config.webhooks, ...settings },
    allow: new CallbackAllowList(t.config.callbackAllow),
    log: createLogger('silent'),
    registry: t.service.metrics.registry,
    alerts: t.service.alerts,
    drainSeconds,
  });
  await dispatcher.start();
  return dispatcher;
}
