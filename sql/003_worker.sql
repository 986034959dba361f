-- Worker runtime: which pg-boss execution owns each job, the dead-letter mark, and operator alerts.

-- A long job runs as a chain of pg-boss executions; only the execution named here may claim the job
-- (NULL means the first one, whose id is the job id). `execution_retry` is that execution's pg-boss
-- retryCount at its claim, so a lease sweep can fail exactly that attempt.
ALTER TABLE jobs
  ADD COLUMN execution_id uuid,
  ADD COLUMN execution_retry integer,
  ADD COLUMN dead_lettered_at timestamptz;

-- The lease sweep looks for running jobs whose lease ran out; the stall monitor for stale checkpoints.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'RUNNING';
-- GET /v1/dead-letters: a tenant's dead-lettered jobs, newest first.
CREATE INDEX jobs_dead_letters ON jobs (tenant_id, dead_lettered_at DESC, id DESC) WHERE dead_lettered_at IS NOT NULL;

-- One row per alert condition (e.g. `job-stalled:<id>`), shared by every process, so a condition is
-- raised once and cleared once however many monitors see it.
CREATE TABLE alerts (
  key         text PRIMARY KEY,
  kind        text NOT NULL,
  message     text NOT NULL,
  details     jsonb NOT NULL DEFAULT '{}',
  raised_at   timestamptz NOT NULL DEFAULT now(),
  cleared_at  timestamptz
);
CREATE INDEX alerts_active ON alerts (kind) WHERE cleared_at IS NULL;
