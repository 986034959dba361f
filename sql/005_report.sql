-- Files that jobs produce (the report's PDF and CSV), stored through src/storage; the bytes live in the
-- storage, this table says which job owns them, what they are, and when they expire.
CREATE TABLE artifacts (
  job_id        uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  storage_key   text NOT NULL,
  content_type  text NOT NULL,
  size          bigint NOT NULL CHECK (size >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (job_id, name)
);
-- The retention sweep finds expired artifacts oldest first.
CREATE INDEX artifacts_expiry ON artifacts (expires_at);
