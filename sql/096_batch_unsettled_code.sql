-- longhaul_batch_unsettled (sql/095) raised LH002, the SQLSTATE longhaul_require_count (sql/012) already
-- raises for a worker's refused completion: each of longhaul's SQLSTATEs now names one condition.
-- LH001 pg-boss enqueued fewer jobs than a submission created (sql/010, sql/080)
-- LH002 a pipelined statement applied to fewer rows than it was given (sql/012)
-- LH003 a whole-batch submission cannot settle its batch in one statement (this function)
CREATE OR REPLACE FUNCTION longhaul_batch_unsettled(created bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION 'the batch statement created % of % jobs', created, expected USING ERRCODE = 'LH003';
END $$;
