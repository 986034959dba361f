-- A terminal status change no longer appends its `status` row to job_events: `finished_seq` is the
-- event sequence number it took, and the event is the row's status, attempts, error and result at
-- `finished_at`, which nothing changes while the job stays finished. The only move out of a terminal
-- status, an operator's replay (FAILED → PENDING), appends the event as a row first and clears the
-- column, as the move to PENDING does for a claim's RUNNING (sql/098). Streams read it beside the
-- stored events (src/realtime/events.ts). A job that runs once and finishes stores no status row.
-- Jobs finished before this migration have no finished_seq (their row is stored).
ALTER TABLE jobs ADD COLUMN finished_seq bigint;
