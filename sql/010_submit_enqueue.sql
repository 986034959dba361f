-- Lets one statement both insert jobs and enqueue them: longhaul_enqueue runs pg-boss's own insert
-- statement (captured from PgBoss.insert() through its `db` option, never written by hand) with the
-- given payload, inside the caller's statement and so inside its transaction. A submission batch
-- therefore costs one round trip and needs no BEGIN/COMMIT. The statement is prepared once per
-- session (named by its hash), so its plan is not made again for every batch. `expected` guards
-- against a changed pg-boss statement: unless it reports exactly that many inserted jobs, the whole
-- statement fails.
CREATE FUNCTION longhaul_enqueue(boss_sql text, boss_jobs text, expected int) RETURNS int
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  stmt text := 'longhaul_enqueue_' || md5(boss_sql);
  inserted int;
BEGIN
  IF expected = 0 THEN
    RETURN 0;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = stmt) THEN
    EXECUTE format('PREPARE %I(text) AS %s', stmt, boss_sql);
  END IF;
  EXECUTE format('EXECUTE %I(%L)', stmt, boss_jobs);
  GET DIAGNOSTICS inserted = ROW_COUNT;
  IF inserted IS DISTINCT FROM expected THEN
    RAISE EXCEPTION 'pg-boss enqueued % of % jobs', inserted, expected USING ERRCODE = 'LH001';
  END IF;
  RETURN inserted;
END $$;
