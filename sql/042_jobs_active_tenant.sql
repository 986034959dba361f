-- The fair share of worker slots (src/worker/fair-share.ts) counts each tenant's running and waiting
-- jobs before fetching: with the tenant in the active-jobs index, the count finds them by status and
-- tenant. tenant_id never changes, so checkpoints stay HOT updates (sql/040).
DROP INDEX jobs_active;
CREATE INDEX jobs_active ON jobs (status, tenant_id) WHERE status IN ('PENDING', 'RUNNING');
