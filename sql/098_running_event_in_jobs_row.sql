-- A claim no longer appends its `RUNNING` status row to job_events when it can be read from the jobs
-- row: `running_seq` is the event sequence number the claim took and `running_at` its time; the
-- event's attempts are the row's (they change only at the next claim or a replay, and the job moves
-- to PENDING before either, which appends the event as a row and clears the columns). A claim of a
-- job whose row carries an error (a retry, a replay) still appends the row, as that event carries the
-- error. Streams read the status events from job_events beside this one (src/realtime/events.ts), so
-- a reconnecting stream still gets every status change (docs/live-progress.md). A tiny job appends one
-- status row instead of two. Jobs claimed before this migration have no running_seq.
ALTER TABLE jobs ADD COLUMN running_seq bigint, ADD COLUMN running_at timestamptz;
