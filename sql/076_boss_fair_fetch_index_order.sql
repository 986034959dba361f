-- The fair fetch's index (sql/075) sorted by priority descending: the planner then served a tenant's
-- next executions from pg-boss's own queue index, which has the same order, walking every other
-- tenant's executions ahead of them. Keyed by the negated priority (the order the fair fetch asks for),
-- only this index gives a tenant's executions in order; the old one is dropped.
CREATE OR REPLACE FUNCTION longhaul_boss_fair_fetch_index(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  idx text := tbl || '_longhaul_tenant_queue';
  old text := tbl || '_longhaul_fair_fetch';
BEGIN
  IF to_regclass(format('pgboss.%I', idx)) IS NOT NULL AND to_regclass(format('pgboss.%I', old)) IS NULL THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(7140003);
  EXECUTE format('DROP INDEX IF EXISTS pgboss.%I', old);
  EXECUTE format(
    'CREATE INDEX IF NOT EXISTS %I ON pgboss.%I (name, group_id, (-priority), created_on) '
    'WHERE state < ''active'' AND NOT blocked',
    idx, tbl);
END $$;
