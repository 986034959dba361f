/** The circuit breaker's decision: when the latest outcomes of an endpoint open it. */
import { describe, expect, it } from 'vitest';
import { OutcomeWindow } from '../src/webhooks/breaker-window.ts';

describe('breaker window', () => {
  const s = { window: 4, failureRatio: 0.5, minRequests: 3, cooldownSeconds: 1 };
  it('opens when most recent outcomes failed, with enough of them', () => {
    const w = new OutcomeWindow(s.window);
    w.record(false);
    w.record(false);
    expect(w.shouldOpen(s)).toBe(false);
    w.record(true);
    expect(w.shouldOpen(s)).toBe(true);
    for (let i = 0; i < 4; i++) w.record(true);
    expect(w.failures).toBe(0);
    expect(w.shouldOpen(s)).toBe(false);
  });

  it('opens at exactly the failure ratio, not below it', () => {
    const w = new OutcomeWindow(s.window);
    for (const ok of [false, true, false, true]) w.record(ok);
    expect(w.failures).toBe(2);
    expect(w.shouldOpen(s)).toBe(true);
    const below = new OutcomeWindow(s.window);
    for (const ok of [false, true, true, true]) below.record(ok);
    expect(below.shouldOpen(s)).toBe(false);
  });

  it('looks only at the latest outcomes: older ones drop out of the window', () => {
    const w = new OutcomeWindow(3);
    for (const ok of [false, false, false, true, true]) w.record(ok);
    expect(w.total).toBe(3);
    expect(w.failures).toBe(1);
    w.record(false);
    w.record(false);
    expect(w.failures).toBe(2);
  });

  it('starts over after a reset', () => {
    const w = new OutcomeWindow(s.window);
    for (let i = 0; i < 4; i++) w.record(false);
    expect(w.shouldOpen(s)).toBe(true);
    w.reset();
    expect(w.total).toBe(0);
    expect(w.failures).toBe(0);
    expect(w.shouldOpen(s)).toBe(false);
    w.record(false);
    expect(w.total).toBe(1);
  });
});
