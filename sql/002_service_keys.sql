-- Key material shared by every longhaul process (signed download URLs, stream tokens), created once.
CREATE TABLE service_keys (
  name        text PRIMARY KEY,
  secret      bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
