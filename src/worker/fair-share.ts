/**
 * Fair sharing of the cluster's worker slots among tenants, with no slot wasted. Each tenant's demand is
 * its jobs running plus its jobs waiting; the share is the max-min fair "water level": the smallest
 * per-tenant cap at which the tenants' capped demands fill every slot. A tenant alone may use every
 * slot; several with backlogs get equal shares; one whose demand is below the level keeps all it needs,
 * and what it leaves goes to the others. The fetcher passes the share to pg-boss as its cluster-wide
 * group (tenant) limit, recomputed as demand changes, so a tenant whose backlog empties gives its
 * slots back at the next fetch. A worker whose slots are all taken may start a job beyond them for a
 * tenant with none running anywhere (its burst slots, burstLimits), so a newly active tenant does not
 * wait for another tenant's job to end.
 */

export interface TenantDemand {
  running: number;
  waiting: number;
}

/**
 * The smallest cap c with Σ min(demand, c) ≥ slots (at least 1): rounding up, the tenants at the level
 * may together hold up to one slot each beyond the slots. When every demand fits, every slot (nobody
 * is held back).
 */
export function fairShare(demands: readonly number[], slots: number): number {
  const sorted = demands.filter((d) => d > 0).sort((a, b) => a - b);
  let remaining = Math.max(1, slots);
  for (let i = 0; i < sorted.length; i++) {
    const d = sorted[i] ?? 0;
    const tenants = sorted.length - i;
    if (d * tenants >= remaining) return Math.max(1, Math.ceil(remaining / tenants));
    remaining -= d;
  }
  return Math.max(1, slots);
}

/** pg-boss's group (tenant) limits for one fetch: `default` for every tenant, `tiers` for those with their own. */
export interface GroupLimits {
  default: number;
  tiers: Record<string, number>;
  /** Whether the limits hold any tenant back at all (else a fetch needs none). */
  holdsBack: boolean;
  /**
   * Whether a tenant's running limit of its own (or the default one) applies: a hard limit, so fetches
   * of concurrent workers must not both count the same free slot (the fetcher serialises them).
   */
  hard: boolean;
  /** Whether a tenant of the reading could start a job under them (else the fetcher waits for a change). */
  canStart: boolean;
  /** Whether a tenant of the reading has jobs waiting. */
  queued: boolean;
  /** Whether at most one tenant of the reading has jobs running or waiting. */
  alone: boolean;
}

/**
 * The limits to fetch under: every tenant at most the fair share of `slots`, and a tenant with a running
 * limit of its own (`limits`, else `defaultLimit` when set) at most that. `canStart` is false when no
 * tenant of the reading could start a job under them (each one with waiting jobs holds its share or its
 * limit): a fetch would return nothing unless a job came since the reading. A reading with no active
 * job at all can start one, and so can a tenant alone with jobs waiting under no running limit.
 */
export function groupLimits(
  demand: ReadonlyMap<string, TenantDemand>,
  slots: number,
  limits: ReadonlyMap<string, number>,
  defaultLimit: number | undefined,
): GroupLimits {
  const cap = fairShare(
    [...demand.values()].map((d) => d.running + d.waiting),
    slots,
  );
  const within = (limit: number | undefined) => (limit === undefined ? cap : Math.min(cap, limit));
  const tiers: Record<string, number> = {};
  for (const [tenant, limit] of limits) tiers[tenant] = within(limit);
  const hard = defaultLimit !== undefined || limits.size > 0;
  // A tenant alone under no running limit may fill every free slot: its running count, which counts jobs
  // settling (their code returned, their slots free while their completions commit), bounds nothing then.
  const unbounded = demand.size === 1 && !hard;
  const canStart = [...demand].some(
    ([tenant, d]) => d.waiting > 0 && (unbounded || d.running < (tiers[tenant] ?? within(defaultLimit))),
  );
  const holdsBack = cap < slots || hard;
  const queued = [...demand.values()].some((d) => d.waiting > 0);
  return {
    default: within(defaultLimit),
    tiers,
    holdsBack,
    hard,
    canStart: canStart || demand.size === 0,
    queued,
    alone: demand.size <= 1,
  };
}

/**
 * The limits of a burst fetch, by a worker whose slots are all taken: only a tenant with no job running
 * anywhere may start one. Every tenant's cap is 1 (within any hard limit, which is at least 1), counted
 * by the fetch against the tenant's running jobs in its own snapshot, however old the reading. A
 * tenant alone, or one already running a job, never takes a burst slot: it waits for a slot to free.
 * `canStart`: a tenant of the reading has jobs waiting and none running.
 */
export function burstLimits(demand: ReadonlyMap<string, TenantDemand>, share: GroupLimits): GroupLimits {
  const canStart = [...demand.values()].some((d) => d.waiting > 0 && d.running === 0);
  return { ...share, default: 1, tiers: {}, holdsBack: true, canStart };
}
