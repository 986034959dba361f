/** The fair share of the cluster's slots (src/worker/fair-share.ts): the max-min water level, no slot wasted. */
import { describe, expect, it } from 'vitest';
import { burstLimits, fairShare, groupLimits } from '../src/worker/fair-share.ts';

describe('fairShare', () => {
  it('lets a tenant alone use every slot', () => {
    expect(fairShare([100], 8)).toBe(8);
    expect(fairShare([], 8)).toBe(8);
  });

  it('splits the slots equally among tenants with backlogs, rounding up', () => {
    expect(fairShare([100, 100], 8)).toBe(4);
    expect(fairShare([100, 100, 100], 8)).toBe(3);
    expect(fairShare([50, 100, 100, 100], 32)).toBe(8);
  });

  it('gives what a small tenant leaves to the others, and holds nobody back when all fit', () => {
    expect(fairShare([2, 100], 8)).toBe(6);
    expect(fairShare([1, 2, 100], 8)).toBe(5);
    expect(fairShare([3, 3], 8)).toBe(8);
  });
});

describe('groupLimits', () => {
  const demand = (entries: Array<[string, number, number]>) =>
    new Map(entries.map(([t, running, waiting]) => [t, { running, waiting }]));
  const none = new Map<string, number>();

  it('says nobody can start while every tenant with waiting jobs holds its share', () => {
    expect(
      groupLimits(
        demand([
          ['a', 4, 10],
          ['b', 4, 10],
        ]),
        8,
        none,
        undefined,
      ),
    ).toMatchObject({ canStart: false });
    expect(
      groupLimits(
        demand([
          ['a', 4, 10],
          ['b', 2, 0],
        ]),
        8,
        none,
        undefined,
      ),
    ).toEqual({ default: 6, tiers: {}, holdsBack: true, hard: false, canStart: true, queued: true, alone: false });
    expect(
      groupLimits(
        demand([
          ['a', 8, 10],
          ['b', 0, 3],
        ]),
        8,
        none,
        undefined,
      ),
    ).toEqual({ default: 5, tiers: {}, holdsBack: true, hard: false, canStart: true, queued: true, alone: false });
    expect(groupLimits(demand([]), 8, none, undefined)).toEqual({
      default: 8,
      tiers: {},
      holdsBack: false,
      hard: false,
      canStart: true,
      queued: false,
      alone: true,
    });
    expect(groupLimits(demand([['a', 3, 100]]), 8, none, undefined)).toEqual({
      default: 8,
      tiers: {},
      holdsBack: false,
      hard: false,
      canStart: true,
      queued: true,
      alone: true,
    });
  });

  it('keeps a tenant’s own running limit, or the default one, below the fair share', () => {
    const limited = new Map([['a', 2]]);
    expect(groupLimits(demand([['a', 2, 10]]), 8, limited, undefined)).toMatchObject({ canStart: false });
    expect(groupLimits(demand([['a', 1, 10]]), 8, limited, undefined)).toEqual({
      default: 8,
      tiers: { a: 2 },
      holdsBack: true,
      hard: true,
      canStart: true,
      queued: true,
      alone: true,
    });
    expect(groupLimits(demand([['a', 1, 10]]), 8, new Map([['a', 20]]), 3)).toEqual({
      default: 3,
      tiers: { a: 8 },
      holdsBack: true,
      hard: true,
      canStart: true,
      queued: true,
      alone: true,
    });
    expect(groupLimits(demand([['b', 3, 10]]), 8, none, 3)).toMatchObject({ canStart: false });
  });

  it('lets a tenant alone under no running limit start jobs whatever its running count', () => {
    // Jobs settling are RUNNING with their slots free: a lone tenant's count may reach the slots and beyond.
    expect(groupLimits(demand([['a', 10, 5]]), 8, none, undefined)).toMatchObject({ canStart: true, alone: true });
    expect(groupLimits(demand([['a', 10, 0]]), 8, none, undefined)).toMatchObject({ canStart: false });
    expect(groupLimits(demand([['a', 8, 5]]), 8, none, 8)).toMatchObject({ canStart: false });
    expect(groupLimits(demand([['a', 8, 5]]), 8, new Map([['a', 8]]), undefined)).toMatchObject({ canStart: false });
  });
});

describe('burstLimits', () => {
  const demand = (entries: Array<[string, number, number]>) =>
    new Map(entries.map(([t, running, waiting]) => [t, { running, waiting }]));

  it('caps every tenant at one job, so only a tenant with none running anywhere can take a burst slot', () => {
    const reading = demand([
      ['a', 8, 100],
      ['b', 0, 3],
    ]);
    const share = groupLimits(reading, 8, new Map([['a', 20]]), undefined);
    expect(burstLimits(reading, share)).toEqual({
      default: 1,
      tiers: {},
      holdsBack: true,
      hard: true,
      canStart: true,
      queued: true,
      alone: false,
    });
  });

  it('lets nobody start while every tenant with waiting jobs runs one already, or a tenant is alone', () => {
    const both = demand([
      ['a', 8, 100],
      ['b', 1, 3],
    ]);
    const alone = demand([['a', 8, 100]]);
    const none = new Map<string, number>();
    expect(burstLimits(both, groupLimits(both, 8, none, undefined)).canStart).toBe(false);
    expect(burstLimits(alone, groupLimits(alone, 8, none, undefined)).canStart).toBe(false);
  });
});
