-- Indexes the metrics and the dead-letter alert read through, each over a small part of its table.

-- `longhaul_dead_letter_deliveries` counts DEAD deliveries at every scrape: without it, a count among
-- millions of delivered rows is a scan of them all.
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (created_at) WHERE status = 'DEAD';

-- The worker monitor finds the jobs dead-lettered since its last pass across tenants (jobs_dead_letters
-- leads with the tenant).
CREATE INDEX jobs_dead_lettered_at ON jobs (dead_lettered_at, id) WHERE dead_lettered_at IS NOT NULL;
