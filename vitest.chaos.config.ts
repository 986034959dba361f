import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * `npm run chaos`: the tests that stop and restart a Postgres of their own under load (test/chaos/).
 * Too long for every `npm test`; they need no shared server, so no global set-up.
 */
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/chaos/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    globalSetup: [],
  },
});
