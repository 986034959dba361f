-- A checkpoint no longer appends a `progress` row to job_events: the job's progress is its row's
-- processed and total, and `progress_seq` is the event sequence number of the checkpoint that set
-- them. Streams read the status events from job_events and the newest progress from the jobs row
-- (src/realtime/events.ts), so a reconnecting stream gets every status change and the latest
-- progress (docs/live-progress.md). Progress rows written before this migration stay readable; jobs
-- that never checkpointed since have no progress_seq.
ALTER TABLE jobs ADD COLUMN progress_seq bigint;
