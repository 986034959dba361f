-- A lost worker is not a failed attempt: a takeover after a lease ran out counts against its own budget
-- (LONGHAUL_MAX_LEASE_LOSSES), not against max_attempts. `lease_losses` counts the takeovers since the
-- job was submitted or last replayed.
ALTER TABLE jobs ADD COLUMN lease_losses integer NOT NULL DEFAULT 0;

-- Every error_history entry now says which kind it is, `failure` or `lease_lost`. Entries written
-- before this migration get theirs: a lost lease was recorded as a failure named LeaseExpired. Only
-- jobs with a history are rewritten.
UPDATE jobs j
   SET error_history = (
     SELECT jsonb_agg(CASE WHEN e ? 'kind' THEN e
                           ELSE e || jsonb_build_object('kind', CASE WHEN e->>'name' = 'LeaseExpired' THEN 'lease_lost' ELSE 'failure' END)
                      END ORDER BY i)
       FROM jsonb_array_elements(j.error_history) WITH ORDINALITY AS h(e, i))
 WHERE jsonb_array_length(j.error_history) > 0;
