-- job_events loses its foreign key to jobs. Its check locked the job's row (FOR KEY SHARE) at every
-- event insert, a WAL record each, twice per tiny job, and guarded nothing the writer does not: an
-- event is only ever inserted by the status change that updates its job's row in the same statement
-- (statusChangeSql, src/jobs/lifecycle.ts), so its job exists and is locked until that commits. The
-- cascade goes with it: whatever deletes jobs deletes their events in the same statement
-- (deleteFinishedJobs, test/job-retention.test.ts).
ALTER TABLE job_events DROP CONSTRAINT job_events_job_id_fkey;
