-- The metadata filter's GIN index holds only the jobs that have metadata. GIN keeps an entry for a
-- NULL too, so every non-HOT update of a job without metadata (its claim, its completion) wrote one;
-- `metadata @> …` implies metadata IS NOT NULL, so the filter is still served from this index
-- (test/jobs-batch-filters.test.ts).
DROP INDEX jobs_metadata;
CREATE INDEX jobs_metadata ON jobs USING gin (metadata jsonb_path_ops) WHERE metadata IS NOT NULL;
