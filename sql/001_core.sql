-- Tenants, their API keys and webhook secrets, the jobs table (with its checkpoint and lease), and job events.

CREATE TABLE tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are 256-bit random strings; only their SHA-256 is stored (a slow hash buys nothing at that entropy).
CREATE TABLE api_keys (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  key_hash    bytea NOT NULL UNIQUE,
  key_prefix  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Standard Webhooks symmetric secrets (`whsec_…`). Several may be active during a rotation's grace period.
CREATE TABLE webhook_secrets (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  secret      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz
);
CREATE INDEX webhook_secrets_tenant ON webhook_secrets (tenant_id, created_at);

CREATE TABLE jobs (
  id                    uuid PRIMARY KEY,
  tenant_id             uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  type                  text NOT NULL,
  status                text NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
  input                 jsonb NOT NULL,
  metadata              jsonb,
  callback_url          text,
  max_attempts          integer NOT NULL CHECK (max_attempts >= 1),
  attempts              integer NOT NULL DEFAULT 0,
  processed             bigint NOT NULL DEFAULT 0,
  total                 bigint,
  result                jsonb,
  error                 jsonb,
  error_history         jsonb NOT NULL DEFAULT '[]',
  -- Idempotency-Key of the request that created the job, with the fingerprint of its body; the key
  -- is released (set NULL) once it expires.
  idempotency_key       text,
  idempotency_hash      text,
  idempotency_expires_at timestamptz,
  -- Checkpoint: the cursor and state after the last committed chunk.
  checkpoint_cursor     jsonb,
  checkpoint_state      jsonb,
  checkpoint_at         timestamptz,
  -- Lease: who runs the job now, fenced by a token that changes with every claim.
  lease_token           uuid,
  lease_owner           text,
  lease_expires_at      timestamptz,
  cancel_requested_at   timestamptz,
  -- Per-job sequence of events (status changes, progress), for live streams.
  event_seq             bigint NOT NULL DEFAULT 0,
  created_at            timestamptz NOT NULL DEFAULT now(),
  started_at            timestamptz,
  updated_at            timestamptz NOT NULL DEFAULT now(),
  finished_at           timestamptz
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Keyset pagination, newest first, optionally by status or type.
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_status_created ON jobs (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_type_created ON jobs (tenant_id, type, created_at DESC, id DESC);
CREATE INDEX jobs_active ON jobs (status, updated_at) WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX jobs_idempotency_expiry ON jobs (idempotency_expires_at) WHERE idempotency_key IS NOT NULL;

-- Every status change and checkpoint of a job, numbered per job, for streams that must not miss one.
CREATE TABLE job_events (
  job_id      uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq         bigint NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('status', 'progress')),
  data        jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, seq)
);
