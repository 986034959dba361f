-- A claim (PENDING → RUNNING) changes no indexed column of jobs, so Postgres can write it as a HOT
-- update, as it does a checkpoint (sql/040): no index entry in each of the table's indexes for every
-- claim. Four indexes named `status` or a column the claim sets (started_at): the list by status,
-- the active jobs, the scheduled and the expiring ones. Their queries now read two things whose
-- values a claim leaves alone:
-- `phase`, a job's status with PENDING and RUNNING both ACTIVE (it changes when the job finishes and
-- when a replay reopens it), and `running_jobs`, the jobs RUNNING now, one row each, kept by a trigger
-- on every status change into or out of RUNNING by whatever statement makes it, so the table holds
-- exactly the RUNNING jobs (the lease sweep, the tenants' demand, the workers' lists read it; it is as
-- small as the cluster's slots).
-- The lock first, which the new column takes anyway: no status changes between the copy of the
-- RUNNING jobs below and the trigger that keeps the table from then on.
LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE;

CREATE TABLE running_jobs (job_id uuid PRIMARY KEY);

INSERT INTO running_jobs (job_id) SELECT id FROM jobs WHERE status = 'RUNNING';

CREATE FUNCTION longhaul_running_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- NEW is null for a delete, OLD for an insert.
  IF NEW.status = 'RUNNING' THEN
    INSERT INTO running_jobs (job_id) VALUES (NEW.id);
  ELSE
    DELETE FROM running_jobs WHERE job_id = OLD.id;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER running_jobs_moved AFTER UPDATE OF status ON jobs FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status AND 'RUNNING' IN (OLD.status, NEW.status))
  EXECUTE FUNCTION longhaul_running_jobs();
CREATE TRIGGER running_jobs_inserted AFTER INSERT ON jobs FOR EACH ROW
  WHEN (NEW.status = 'RUNNING')
  EXECUTE FUNCTION longhaul_running_jobs();
CREATE TRIGGER running_jobs_deleted AFTER DELETE ON jobs FOR EACH ROW
  WHEN (OLD.status = 'RUNNING')
  EXECUTE FUNCTION longhaul_running_jobs();

ALTER TABLE jobs ADD COLUMN phase text NOT NULL
  GENERATED ALWAYS AS (CASE WHEN status IN ('PENDING', 'RUNNING') THEN 'ACTIVE' ELSE status END) STORED;

DROP INDEX jobs_tenant_status_created;
CREATE INDEX jobs_tenant_phase_created ON jobs (tenant_id, phase, created_at DESC, id DESC);
-- A tenant's list of all its jobs merges its phases' lists, each read in order from the index above
-- (src/jobs/repository.ts), so no index orders all of them: one entry fewer for every job's every
-- non-HOT update (its insert and its completion).
DROP INDEX jobs_tenant_created;
DROP INDEX jobs_active;
CREATE INDEX jobs_active ON jobs (tenant_id, created_at) WHERE phase = 'ACTIVE';
DROP INDEX jobs_tenant_scheduled;
CREATE INDEX jobs_tenant_scheduled ON jobs (tenant_id, scheduled_for) WHERE phase = 'ACTIVE' AND scheduled_for IS NOT NULL;
DROP INDEX jobs_pending_expiry;
CREATE INDEX jobs_pending_expiry ON jobs (expires_at) WHERE phase = 'ACTIVE' AND expires_at IS NOT NULL;
-- The planner's estimates of a status (the overview's, the metrics') read `status` and `phase`
-- together: by themselves it would multiply their selectivities as if they were independent.
CREATE STATISTICS jobs_status_phase (mcv) ON status, phase FROM jobs;

-- More room on each page for new row versions: a claim of several jobs of one page in one statement
-- needs a new version of each there to be HOT (finished jobs' pages keep the room unused).
ALTER TABLE jobs SET (fillfactor = 50);
