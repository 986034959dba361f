-- Operator console: named API keys with their last use, and the worker processes that are alive.

-- A tenant may hold several keys; the name says what each is for. last_used_at is written at most
-- once a minute per key (on an auth-cache miss), so busy keys cost no write per request.
ALTER TABLE api_keys
  ADD COLUMN name text NOT NULL DEFAULT 'default' CHECK (length(name) BETWEEN 1 AND 200),
  ADD COLUMN last_used_at timestamptz;

-- One row per running worker process, written by the process itself and refreshed by its heartbeat;
-- rows whose heartbeat is older than a lease are not alive and are swept.
CREATE TABLE workers (
  id              text PRIMARY KEY,
  host            text NOT NULL,
  pid             integer NOT NULL,
  started_at      timestamptz NOT NULL DEFAULT now(),
  concurrency     integer NOT NULL,
  job_types       text[] NOT NULL,
  heartbeat_at    timestamptz NOT NULL DEFAULT now()
);
