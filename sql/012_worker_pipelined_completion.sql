-- The worker sends a batch's completion as one pipelined round trip (BEGIN, the jobs statement,
-- pg-boss's complete, COMMIT): pg-boss's statement is on the wire before the jobs statement has
-- answered, so the jobs statement must fail, rolling the whole transaction back, unless it completed
-- every job it was given (a job whose lease was lost or whose cancel was requested stays RUNNING, and
-- its execution must not be completed). The worker then settles that batch job by job.
CREATE FUNCTION longhaul_require_count(expected int, actual int) RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF actual IS DISTINCT FROM expected THEN
    RAISE EXCEPTION 'the statement applied to % of % rows', actual, expected USING ERRCODE = 'LH002';
  END IF;
  RETURN actual;
END $$;
