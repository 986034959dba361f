-- A submission batch now runs pg-boss's own insert statement inline, as common table expressions of
-- the batch statement itself (src/jobs/submit.ts), instead of through longhaul_enqueue (sql/010),
-- whose PL/pgSQL EXECUTE parsed the payload as SQL text on every batch. What the function also did
-- stays here: unless pg-boss's statement inserted exactly the jobs the batch created, the whole
-- statement fails (SQLSTATE LH001) and the submitter stops using pg-boss's statement this way.
-- longhaul_enqueue stays for the processes of the previous release during a rolling deploy.
CREATE FUNCTION longhaul_enqueued(enqueued bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF enqueued IS DISTINCT FROM expected THEN
    RAISE EXCEPTION 'pg-boss enqueued % of % jobs', enqueued, expected USING ERRCODE = 'LH001';
  END IF;
  RETURN enqueued;
END $$;
