/**
 * The tests Stryker runs against each mutant (`npm run mutation`): unit tests of the pure modules only,
 * with no database, no sockets and no global set-up, so each mutant runs in well under a second.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'test/state.test.ts',
      'test/job-model.test.ts',
      'test/idempotency-key.test.ts',
      'test/cursor.test.ts',
      'test/config.test.ts',
      'test/config-docs.test.ts',
      'test/webhooks-schedule.test.ts',
      'test/webhooks-breaker-window.test.ts',
      'test/webhooks-sign.test.ts',
      'test/webhooks-ssrf.test.ts',
    ],
  },
});
