-- Webhook endpoints are per tenant: the circuit breaker, its counters and the concurrency limit are
-- keyed by tenant and endpoint URL (scheme://host:port/path, without query or fragment), no longer by
-- host, so one tenant's failing path on a shared host holds none of another tenant's deliveries and no
-- tenant sees another's counters. An endpoint that answers 410 Gone is disabled for that tenant until
-- it is enabled again (POST /v1/webhook-endpoints/{id}/enable); its deliveries wait meanwhile.

-- The key of a tenant's endpoint: "<tenant id> <scheme>://<host>:<port><path>" (default port filled in,
-- scheme and host lower-cased, an empty path as "/"). One text value, so the claim's walk over the
-- endpoints with pending deliveries (webhook_deliveries_endpoint_due) and every per-endpoint limit work
-- on it unchanged.
CREATE FUNCTION webhook_endpoint_key(tenant uuid, url text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT tenant::text || ' ' || lower(m[1]) || '://' || lower(m[2]) || ':' ||
         coalesce(m[3], CASE lower(m[1]) WHEN 'https' THEN '443' ELSE '80' END) || coalesce(nullif(m[4], ''), '/')
    FROM regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://(\[[^]]+\]|[^/:?#]+)(?::([0-9]+))?([^?#]*)') AS m
$$;

-- Existing deliveries move to their tenant's endpoint (every row is rewritten once; on a large table run
-- it in a quiet hour). Their old host-wide breakers go: their counters mixed tenants and cannot be split,
-- and an endpoint still failing opens its own breaker again within one window.
UPDATE webhook_deliveries SET endpoint = webhook_endpoint_key(tenant_id, url);
DELETE FROM webhook_endpoints;
DROP FUNCTION webhook_endpoint_of(text);

-- `gone_at` becomes `disabled_at`: set by a 410 answer, cleared only by an explicit enable. The tenant
-- and URL are read from the key; `id` names the endpoint in the API (derived from the key, so a listing
-- can name an endpoint that has no row yet).
ALTER TABLE webhook_endpoints RENAME COLUMN gone_at TO disabled_at;
ALTER TABLE webhook_endpoints
  ADD COLUMN tenant_id uuid GENERATED ALWAYS AS (split_part(endpoint, ' ', 1)::uuid) STORED
    REFERENCES tenants(id) ON DELETE CASCADE,
  ADD COLUMN url text GENERATED ALWAYS AS (split_part(endpoint, ' ', 2)) STORED,
  ADD COLUMN id uuid GENERATED ALWAYS AS (md5(endpoint)::uuid) STORED UNIQUE;
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);
