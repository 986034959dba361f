/**
 * The browser example (/examples/progress.html) in headless Chromium: with a key typed into the page it
 * gets a stream token and follows a job over WebSocket and over EventSource, its progress bar moving
 * with each checkpoint to 100 % and its status to COMPLETED.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transition } from './support/status.ts';
import { launchChromium } from './support/browser.ts';
import { writeProgress } from './support/realtime.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
let browser: Browser;
beforeAll(async () => {
  [t, browser] = await Promise.all([startTestService(), launchChromium()]);
});
afterAll(async () => {
  await browser.close();
  await t.stop();
});

describe('/examples/progress.html', () => {
  it.each(['websocket', 'sse'] as const)('shows a job\u2019s live progress over %s', async (transport) => {
    const res = await t.api('/v1/jobs', {
      method: 'POST',
      json: { type: 'synthetic', input: { chunks: 4, chunk_ms: 1 } },
    });
    const id = ((await res.json()) as { id: string }).id;
    const page = await browser.newPage();
    try {
      await page.goto(`${t.url}/examples/progress.html`);
      await page.fill('#key', t.tenant.api_key);
      await page.fill('#jobId', id);
      await page.check(`input[name=transport][value=${transport}]`);
      await page.click('#start');
      // Predicates run in the page (strings: this project's TypeScript has no DOM library).
      await page.waitForFunction(`document.getElementById('log').textContent.includes('"snapshot"')`);
      expect(await page.textContent('#status')).toBe('PENDING');

      await transition(t.service.pool, id, 'RUNNING');
      await page.waitForFunction(`document.getElementById('status').textContent === 'RUNNING'`);
      for (let i = 1; i <= 3; i++) {
        await writeProgress(t.service.pool, id, i, 4);
        await page.waitForFunction(`document.getElementById('bar').value === ${i * 25}`);
      }
      await writeProgress(t.service.pool, id, 4, 4);
      await transition(t.service.pool, id, 'COMPLETED');
      await page.waitForFunction(`document.getElementById('status').textContent === 'COMPLETED'`);
      expect(await page.evaluate(`document.getElementById('bar').value`)).toBe(100);
      expect(await page.textContent('#numbers')).toContain('4 of 4 processed');
    } finally {
      await page.close();
    }
  });
});
