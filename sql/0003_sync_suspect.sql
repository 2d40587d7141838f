-- Crash-loop isolation: a redelivered request is tried alone, and its attempt is recorded
-- (committed) before it runs. If the worker dies during it, the record names the culprit, so on
-- the next start its innocent neighbours from the same prefetch window are tried first.
CREATE TABLE IF NOT EXISTS prereg.sync_suspect (
    transaction_id  varchar(36) NOT NULL,
    attempts        integer     NOT NULL,
    last_attempt_at timestamp   NOT NULL,
    CONSTRAINT pk_sync_suspect PRIMARY KEY (transaction_id)
);
