-- A checkpoint (and a lease renewal) changes no indexed column of jobs, so Postgres can write it as a
-- HOT update: the new row version goes on the same page and no index gets an entry, where before every
-- checkpoint added one to each of the table's indexes (about half of a checkpoint's WAL). Two indexes
-- named a column a checkpoint sets: `jobs_active` (status, updated_at) and `jobs_running_lease`
-- (lease_expires_at). Both are replaced by one index on status over the active jobs: the lease sweep and
-- the stall and pending alerts filter the running or pending rows (bounded by the slots of the cluster,
-- and by the backlog) on their timestamps.
DROP INDEX jobs_running_lease;
DROP INDEX jobs_active;
CREATE INDEX jobs_active ON jobs (status) WHERE status IN ('PENDING', 'RUNNING');

-- Room on each page for the new versions of its rows: a HOT update needs free space on the same page.
ALTER TABLE jobs SET (fillfactor = 70);
