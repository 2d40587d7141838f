-- The consumed-status job's pending index, keyed by storage time instead of by PRID.
--
-- Why: every stored PRID enters this index until the job moves it. Keyed by PRID (a random
-- key) each insertion lands on a random leaf page, so the index is one more random-access
-- structure competing for shared_buffers with the two PRID primary keys; once they outgrow
-- memory each store pays in page reads and writes (docs/performance.md, "The pending index").
-- Keyed by cr_dtimes (when the worker stored the row) insertions land at the right edge, and
-- the job moves the oldest pending rows first, which is the order it should have anyway.
--
-- On a large existing table this builds the index under a lock that holds writes to
-- processed_prereg_list back for the build (docs/operations.md, "Upgrading"); building it
-- beforehand with CREATE INDEX CONCURRENTLY under this name makes this step skip it.
CREATE INDEX IF NOT EXISTS idx_prcpl_pending_cr_dtimes
    ON prereg.processed_prereg_list (cr_dtimes, prereg_id)
    WHERE status_comments = 'Processed by registration processor';

DROP INDEX IF EXISTS prereg.idx_prcpl_pending;
