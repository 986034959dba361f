import { describe, expect, it } from 'vitest';
import { canTransition, isTerminal, JOB_STATUSES, sourcesOf, TRANSITIONS } from '../src/jobs/state.ts';

describe('job state machine', () => {
  it('never leaves COMPLETED or CANCELLED', () => {
    for (const to of JOB_STATUSES) {
      expect(canTransition('COMPLETED', to)).toBe(false);
      expect(canTransition('CANCELLED', to)).toBe(false);
    }
  });
  it('allows exactly the listed moves', () => {
    const legal = JOB_STATUSES.flatMap((from) => TRANSITIONS[from].map((to) => `${from}->${to}`)).sort();
    expect(legal).toEqual(
      [
        'FAILED->PENDING',
        'PENDING->CANCELLED',
        'PENDING->FAILED',
        'PENDING->RUNNING',
        'RUNNING->CANCELLED',
        'RUNNING->COMPLETED',
        'RUNNING->FAILED',
        'RUNNING->PENDING',
      ].sort(),
    );
  });
  it('gives the sources of each target for SQL guards', () => {
    expect(sourcesOf('RUNNING')).toEqual(['PENDING']);
    expect(sourcesOf('CANCELLED')).toEqual(['PENDING', 'RUNNING']);
  });
  it('calls COMPLETED, FAILED and CANCELLED terminal, and only them', () => {
    expect(JOB_STATUSES.filter(isTerminal)).toEqual(['COMPLETED', 'FAILED', 'CANCELLED']);
  });
});
