-- Signed webhooks: the outbox of deliveries (written by the same statement that moves a job to its
-- terminal state), their attempt log, per-endpoint circuit breakers, and per-tenant signing settings.

-- Which signature scheme a tenant's deliveries carry: v1 (HMAC-SHA256, whsec_ secrets) or v1a (Ed25519).
CREATE TABLE webhook_settings (
  tenant_id   uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  scheme      text NOT NULL DEFAULT 'v1' CHECK (scheme IN ('v1', 'v1a')),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Ed25519 key pairs for v1a. The public half is published in /.well-known/jwks.json under `kid`.
-- Like webhook_secrets, several are active during a rotation's grace period.
CREATE TABLE webhook_signing_keys (
  kid          text PRIMARY KEY,
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  private_pem  text NOT NULL,
  public_jwk   jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz
);
CREATE INDEX webhook_signing_keys_tenant ON webhook_signing_keys (tenant_id, created_at);

-- One row per event to deliver. `webhook_id` is the Standard Webhooks message id: the same on every
-- attempt and every replay, so receivers can dedupe. `payload` holds the exact bytes that are signed.
-- A claimed row has a claim_token and next_attempt_at pushed to the end of the claim lease: if its
-- dispatcher dies, the row is due again when the lease ends and another dispatcher retries it.
CREATE TABLE webhook_deliveries (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  webhook_id       text NOT NULL UNIQUE DEFAULT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  job_id           uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  event_type       text NOT NULL,
  url              text NOT NULL,
  -- scheme://host:port, the unit of the circuit breaker and of the concurrency limit.
  endpoint         text NOT NULL,
  payload          text NOT NULL,
  status           text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCEEDED', 'DEAD')),
  attempts         integer NOT NULL DEFAULT 0,
  -- attempts made before the last replay: the retry schedule starts over after a replay.
  replay_base      integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  claim_token      uuid,
  last_status_code integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  dead_at          timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);
CREATE INDEX webhook_deliveries_tenant_status ON webhook_deliveries (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_endpoint_pending ON webhook_deliveries (endpoint) WHERE status = 'PENDING';

-- Every attempt of a delivery, kept with the delivery (also when it is DEAD).
CREATE TABLE webhook_attempts (
  delivery_id  uuid NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  n            integer NOT NULL,
  started_at   timestamptz NOT NULL,
  duration_ms  integer NOT NULL,
  status_code  integer,
  error        text,
  -- The start of the response body, at most 4 KiB.
  response     text,
  PRIMARY KEY (delivery_id, n)
);

-- Circuit breaker per endpoint. `retry_at`: for an open breaker, the end of its cool-down; for a
-- half-open one, the end of the probe's lease (a probe whose dispatcher died does not block forever).
CREATE TABLE webhook_endpoints (
  endpoint          text PRIMARY KEY,
  state             text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
  retry_at          timestamptz,
  opened_at         timestamptz,
  recent_total      integer NOT NULL DEFAULT 0,
  recent_failures   integer NOT NULL DEFAULT 0,
  successes         bigint NOT NULL DEFAULT 0,
  failures          bigint NOT NULL DEFAULT 0,
  last_success_at   timestamptz,
  last_failure_at   timestamptz,
  -- Set when the endpoint answered 410 Gone.
  gone_at           timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- scheme://host:port of a callback URL (default port filled in), the key of the breaker and the
-- concurrency limit. Callback URLs are validated when saved: absolute, no credentials.
CREATE FUNCTION webhook_endpoint_of(url text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT lower(m[1]) || '://' || lower(m[2]) || ':' ||
         coalesce(m[3], CASE lower(m[1]) WHEN 'https' THEN '443' ELSE '80' END)
    FROM regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://(\[[^]]+\]|[^/:?#]+)(?::([0-9]+))?') AS m
$$;

-- ISO 8601 in UTC with milliseconds, exactly as JavaScript's Date.toISOString() writes it.
CREATE FUNCTION webhook_iso(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
