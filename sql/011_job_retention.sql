-- Finished jobs are deleted after LONGHAUL_JOB_RETENTION_SECONDS; this index finds them without a scan.
-- Partial: a job is only indexed once it has finished, so submissions pay nothing for it.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
