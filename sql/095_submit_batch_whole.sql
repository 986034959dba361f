-- POST /v1/jobs/batch goes as one statement (src/jobs/submit.ts) when every job in it is new and its
-- tenant has no limits. Otherwise the statement calls this function, which fails it (SQLSTATE LH002):
-- nothing it did is kept, and the submitter settles the batch by its transactional path (replays,
-- refusals, limits).
CREATE FUNCTION longhaul_batch_unsettled(created bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION 'the batch statement created % of % jobs', created, expected USING ERRCODE = 'LH002';
END $$;
