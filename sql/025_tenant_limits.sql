-- Per-tenant limits, set through the admin API and owned by src/tenants/limits.ts. A NULL limit is the
-- default: LONGHAUL_TENANT_CONCURRENCY for running jobs, no bound for pending jobs or submissions.
-- The submission rate is a GCRA (a token bucket kept as one timestamp): `rate_tat` is the theoretical
-- arrival time, which every admitted submission moves on by window / limit. Submissions of a limited
-- tenant lock this row for their transaction, so every API process sees one count and one bucket.
CREATE TABLE tenant_limits (
  tenant_id            uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  max_running_jobs     integer CHECK (max_running_jobs BETWEEN 1 AND 1000),
  max_pending_jobs     integer CHECK (max_pending_jobs BETWEEN 0 AND 100000000),
  rate_limit           integer CHECK (rate_limit BETWEEN 1 AND 1000000),
  rate_window_seconds  integer CHECK (rate_window_seconds BETWEEN 1 AND 86400),
  rate_tat             timestamptz,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  CHECK ((rate_limit IS NULL) = (rate_window_seconds IS NULL))
);
