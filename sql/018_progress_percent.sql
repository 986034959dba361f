-- The progress percent of a job, defined once. Every surface reads it from here: GET /v1/jobs/{id} and
-- the list (through JOB_COLUMNS), the live progress event (written by the checkpoint statement) and the
-- webhook payload (built in the terminal-state statement). The last two are built inside SQL
-- statements, so the definition lives in SQL, not in TypeScript.
--
-- Hundredths of a percent, rounded down, computed exactly (integer division on numeric: 57 of 100 is
-- 57, where floats give 56.99), then returned as float8: node-pg reads that as a number and jsonb
-- stores its shortest decimal, so every surface shows the same digits. An unknown total has no percent;
-- a total of 0 (nothing to do) is 100; processed beyond the total stays at 100.
CREATE OR REPLACE FUNCTION longhaul_progress_percent(processed bigint, total bigint) RETURNS float8
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT CASE WHEN total IS NULL THEN NULL
                WHEN total <= 0 THEN 100
                ELSE least(100, div(greatest(processed, 0)::numeric * 10000, total) / 100)::float8 END
  $$;
