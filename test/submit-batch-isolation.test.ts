/**
 * JobSubmitter writes concurrent submissions (of any tenants) as one statement. A value Postgres
 * refuses in one request (here a NUL character, which jsonb refuses) must fail that request only: the
 * batch is then written request by request, and the others' submissions succeed.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { JobSubmitter, type SubmitRequest } from '../src/jobs/submit.ts';
import { DEFAULT_BACKOFF } from '../packages/sdk/src/index.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

function request(tenantId: string, metadata: SubmitRequest['metadata']): SubmitRequest {
  return {
    tenantId,
    type: 'synthetic',
    input: { chunks: 1, chunk_ms: 0 },
    metadata,
    callbackUrl: null,
    maxAttempts: 3,
    backoff: DEFAULT_BACKOFF,
    idempotency: null,
  };
}

it("one tenant's unstorable submission does not fail another tenant's valid one submitted at the same time", async () => {
  const other = await t.newTenant();
  const submitter = new JobSubmitter(t.service.pool, t.service.boss);
  // Submitted in the same turn of the event loop: the two go in one batch, as concurrent HTTP requests do under load.
  const good = submitter.submit(request(other.id, { order: 1 }));
  const bad = submitter.submit(request(t.tenant.id, { a: '\u0000' }));
  const [g, b] = await Promise.allSettled([good, bad]);
  expect(b.status).toBe('rejected');
  expect(g.status, g.status === 'rejected' ? String(g.reason) : '').toBe('fulfilled');
  expect(g.status === 'fulfilled' ? g.value.kind : undefined).toBe('created');
});
