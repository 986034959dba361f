/**
 * JSON that JSON.parse accepts but Postgres cannot store (a NUL character, a lone UTF-16 surrogate) and
 * NUL bytes in query or path parameters are a client's mistake: a 4xx problem that changes nothing,
 * never a 500 (docs/errors.md). JobSubmitter writes concurrent submissions (of any tenants) as one
 * statement: such a value fails only the request that carries it, the batch is then written request by
 * request, and the others' submissions succeed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BACKOFF } from '../packages/sdk/src/index.ts';
import { JobSubmitter, type SubmitRequest } from '../src/jobs/submit.ts';
import { startTestService, type TestService } from './support/service.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t.stop());

const H = () => ({ authorization: `Bearer ${t.tenant.api_key}`, 'content-type': 'application/json' });

async function jobCount(): Promise<number> {
  const { rows } = await t.service.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
  return rows[0]?.n ?? -1;
}

async function expectClientProblem(res: Response): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBeGreaterThanOrEqual(400);
  expect(res.status, text).toBeLessThan(500);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
}

describe('POST /v1/jobs with strings Postgres cannot store', () => {
  it.each([
    ['NUL in a metadata value', '{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":{"a":"\\u0000"}}'],
    ['NUL in a metadata key', '{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":{"\\u0000":1}}'],
    [
      'a lone surrogate in metadata',
      '{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"metadata":{"a":"\\ud800"}}',
    ],
    [
      'NUL in callback_url',
      '{"type":"synthetic","input":{"chunks":1,"chunk_ms":0},"callback_url":"https://example.com/a\\u0000b"}',
    ],
  ])('%s answers a 4xx problem, not 500, and creates nothing', async (_name, body) => {
    const before = await jobCount();
    const res = await fetch(`${t.url}/v1/jobs`, { method: 'POST', headers: H(), body });
    await expectClientProblem(res);
    expect(await jobCount()).toBe(before);
  });
});

describe('a batch of submissions with one Postgres refuses', () => {
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
});

describe('NUL bytes in query and path parameters', () => {
  it('GET /v1/jobs?type=%00 answers a 4xx problem, not 500', async () => {
    await expectClientProblem(await fetch(`${t.url}/v1/jobs?type=%00`, { headers: H() }));
  });

  it('GET /v1/jobs/{id}/artifacts/%00 answers a 4xx problem, not 500', async () => {
    await expectClientProblem(
      await fetch(`${t.url}/v1/jobs/00000000-0000-0000-0000-000000000000/artifacts/a%00b`, { headers: H() }),
    );
  });
});
