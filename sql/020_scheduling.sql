-- Scheduling and time limits of a job (docs/scheduling.md): when it may start, its priority, how long
-- it may run in all, by when it must have started, and the recurring schedule that created it.
--
-- `scheduled_for` mirrors the start_after of the job's first pg-boss execution (both are written in
-- the submission's statement); `expires_at` is the instant after which a job never started is failed
-- (`expired`) instead of run; `timeout_seconds` bounds the time from the job's first start to its end.
-- `schedule_id` has no foreign key here: the schedules table belongs to the schedules module.
ALTER TABLE jobs
  ADD COLUMN scheduled_for timestamptz,
  ADD COLUMN priority integer NOT NULL DEFAULT 0,
  ADD COLUMN timeout_seconds integer CHECK (timeout_seconds > 0),
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN schedule_id uuid;

-- GET /v1/jobs?scheduled=true: a tenant's jobs waiting for their time.
CREATE INDEX jobs_tenant_scheduled ON jobs (tenant_id, scheduled_for) WHERE status = 'PENDING' AND scheduled_for IS NOT NULL;
-- The expiry sweep: PENDING jobs never started whose start deadline passed.
CREATE INDEX jobs_pending_expiry ON jobs (expires_at) WHERE status = 'PENDING' AND started_at IS NULL AND expires_at IS NOT NULL;
-- GET /v1/jobs?metadata.KEY=VALUE: containment (`metadata @> {...}`), the operator jsonb_path_ops serves.
CREATE INDEX jobs_metadata ON jobs USING gin (metadata jsonb_path_ops);
-- GET /v1/jobs?schedule_id=…: the jobs a schedule created, newest first.
CREATE INDEX jobs_schedule_created ON jobs (schedule_id, created_at DESC, id DESC) WHERE schedule_id IS NOT NULL;
