/**
 * The tests Stryker runs against each mutant (`npm run mutation`): unit tests of the pure modules only,
 * with no database and no global set-up, so each mutant runs in well under a second.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/state.test.ts', 'test/webhooks-units.test.ts'],
  },
});
