-- The claim consumes its pg-boss execution (src/worker/fair-fetch.ts, src/worker/claimer.ts): no
-- statement settles an execution after its claim, so nothing reads the retry count the claim recorded.
-- Workers no longer write it. The column stays while workers of an earlier version, which write it,
-- may still run beside this one (a rolling deploy); a later migration drops it.
COMMENT ON COLUMN jobs.execution_retry IS
  'Unused: the pg-boss retry count of the execution that claimed the job, written by earlier versions only';
