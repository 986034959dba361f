-- Recurring schedules (src/schedules/store.ts). Each firing creates one job, which links back through
-- jobs.schedule_id (sql/020). `next_fire_at` is the next occurrence owed (NULL while paused); the firing
-- service claims due rows with FOR UPDATE SKIP LOCKED and, in the same transaction, inserts the job and
-- moves `next_fire_at` on, so each occurrence is fired by one process, once.
CREATE TABLE schedules (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  cron           text NOT NULL,
  timezone       text NOT NULL,
  job_type       text NOT NULL,
  job_input      jsonb NOT NULL,
  job_metadata   jsonb,
  callback_url   text,
  overlap        text NOT NULL CHECK (overlap IN ('skip', 'allow')),
  paused_at      timestamptz,
  next_fire_at   timestamptz,
  last_fire_at   timestamptz,
  last_job_id    uuid,
  -- What the last occurrence did: `created` a job, or `skipped` it (overlap "skip", the last job unfinished).
  last_outcome   text CHECK (last_outcome IN ('created', 'skipped')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name)
);
CREATE INDEX schedules_tenant_created ON schedules (tenant_id, created_at DESC, id DESC);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
