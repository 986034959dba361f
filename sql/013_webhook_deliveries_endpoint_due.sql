-- The dispatcher's claim takes the earliest due deliveries of each endpoint, so that a long backlog of
-- one endpoint (at its concurrency limit, or slow) cannot hide every other endpoint's deliveries. It
-- walks the endpoints with pending deliveries along this index, one probe each, and reads each
-- endpoint's earliest rows from it. It serves every lookup the index on endpoint alone served. On a
-- large table, create it CONCURRENTLY by hand before upgrading (migrations run in a transaction).
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint, next_attempt_at) WHERE status = 'PENDING';
DROP INDEX IF EXISTS webhook_deliveries_endpoint_pending;
