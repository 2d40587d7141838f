-- Operator actions are traceable: the row of a `dlq replay` or `dlq delete` run names the
-- operator (in app_id) and holds, as JSON, the filter, the limit and how many messages were
-- examined, matched, acted on and kept. Never a PRID: the filter names error codes,
-- transaction IDs and times only. NULL for every other event.
ALTER TABLE prereg.sync_audit ADD COLUMN IF NOT EXISTS detail jsonb;
