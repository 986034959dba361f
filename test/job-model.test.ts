/** The job as the API shows it: its progress (the percent is computed in SQL, see progress-percent.test.ts), its timestamps, and what an Idempotency-Key replay answers. */
import { describe, expect, it } from 'vitest';
import { asCreated, toResource, type JobRow } from '../src/jobs/model.ts';

const row: JobRow = {
  id: '0b7e3f4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b',
  tenant_id: 't1',
  type: 'synthetic',
  status: 'FAILED',
  input: { chunks: 8 },
  metadata: { order: 42 },
  callback_url: 'https://example.com/hook',
  max_attempts: 3,
  attempts: 3,
  processed: 2,
  total: 8,
  percent: 25,
  result: { partial: true },
  error: { message: 'boom' },
  error_history: [
    { kind: 'lease_lost', message: 'first', attempt: 1, lease_losses: 1, at: '2026-01-01T00:00:05.000Z' },
    { kind: 'failure', message: 'boom', attempt: 1, at: '2026-01-01T00:00:09.000Z' },
  ],
  scheduled_for: new Date('2026-01-01T00:00:00.500Z'),
  priority: 5,
  timeout_seconds: 3600,
  expires_at: new Date('2026-01-01T01:00:00.500Z'),
  schedule_id: null,
  created_at: new Date('2026-01-01T00:00:00.000Z'),
  started_at: new Date('2026-01-01T00:00:01.000Z'),
  updated_at: new Date('2026-01-01T00:00:09.000Z'),
  finished_at: new Date('2026-01-01T00:00:10.000Z'),
};

describe('the job resource', () => {
  it('shows the stored job with ISO timestamps and its progress', () => {
    expect(toResource(row)).toEqual({
      id: row.id,
      type: 'synthetic',
      status: 'FAILED',
      input: { chunks: 8 },
      metadata: { order: 42 },
      callback_url: 'https://example.com/hook',
      progress: { processed: 2, total: 8, percent: 25 },
      attempts: 3,
      max_attempts: 3,
      result: { partial: true },
      error: { message: 'boom' },
      error_history: [
        { kind: 'lease_lost', message: 'first', attempt: 1, lease_losses: 1, at: '2026-01-01T00:00:05.000Z' },
        { kind: 'failure', message: 'boom', attempt: 1, at: '2026-01-01T00:00:09.000Z' },
      ],
      scheduled_for: '2026-01-01T00:00:00.500Z',
      priority: 5,
      timeout_seconds: 3600,
      expires_at: '2026-01-01T01:00:00.500Z',
      schedule_id: null,
      created_at: '2026-01-01T00:00:00.000Z',
      started_at: '2026-01-01T00:00:01.000Z',
      updated_at: '2026-01-01T00:00:09.000Z',
      finished_at: '2026-01-01T00:00:10.000Z',
    });
  });

  it('shows timestamps not reached yet as null', () => {
    const pending = { ...row, started_at: null, finished_at: null };
    expect(toResource(pending)).toMatchObject({ started_at: null, finished_at: null });
  });

  it('answers a replay with the job as it was created, whatever happened since', () => {
    expect(toResource(asCreated(row))).toEqual({
      id: row.id,
      type: 'synthetic',
      status: 'PENDING',
      input: { chunks: 8 },
      metadata: { order: 42 },
      callback_url: 'https://example.com/hook',
      progress: { processed: 0, total: null, percent: null },
      attempts: 0,
      max_attempts: 3,
      result: null,
      error: null,
      error_history: [],
      scheduled_for: '2026-01-01T00:00:00.500Z',
      priority: 5,
      timeout_seconds: 3600,
      expires_at: '2026-01-01T01:00:00.500Z',
      schedule_id: null,
      created_at: '2026-01-01T00:00:00.000Z',
      started_at: null,
      updated_at: '2026-01-01T00:00:00.000Z',
      finished_at: null,
    });
  });
});
