-- The fair fetch (src/worker/fair-fetch.ts) walks pg-boss's job table per tenant: a skip scan over the
-- tenants with executions queued, then each tenant's next ones by priority and age. This index on the
-- queue's job table serves both, over the executions pg-boss may fetch (the same predicate as its own
-- job_i11), so it holds only the queued ones.
--
-- pg-boss owns schema pgboss and creates it when it starts, after our migrations run, so this file
-- defines the function that builds the index and the worker calls it once pg-boss has started, with
-- the queue's table. It is safe beside pg-boss's own schema management: the name is ours and no pg-boss
-- object has it; pg-boss's migrations alter its tables by name and never drop an index they did not
-- create; an upgrade that rebuilds the table drops the index with it, and the next worker start builds
-- it again (a missing index slows the fetch, never changes what it claims). It is checked before any
-- lock is taken, so a start finds it at no cost; the first build blocks the table's writes while it
-- runs, like any CREATE INDEX, and concurrent starts take turns on an advisory lock.
CREATE FUNCTION longhaul_boss_fair_fetch_index(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  idx text := tbl || '_longhaul_fair_fetch';
BEGIN
  IF to_regclass(format('pgboss.%I', idx)) IS NOT NULL THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(7140003);
  EXECUTE format(
    'CREATE INDEX IF NOT EXISTS %I ON pgboss.%I (name, group_id, priority DESC, created_on) '
    'WHERE state < ''active'' AND NOT blocked',
    idx, tbl);
END $$;
