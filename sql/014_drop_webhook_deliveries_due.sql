-- Since 013 the dispatcher finds due deliveries per endpoint (webhook_deliveries_endpoint_due), and no
-- query reads webhook_deliveries by next_attempt_at alone any more: this index only cost every insert
-- and update of a pending delivery.
DROP INDEX webhook_deliveries_due;
