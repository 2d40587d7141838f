-- The first verdict on a request stands for every later attempt of it (contract, processing
-- rules): a rejection is recorded by transaction ID and body hash, so a redelivery or a copy
-- coming back from a retry tier (an error reply that could not be published) is answered with
-- it again instead of being judged anew, possibly differently (its age is not judged twice).
-- Only an operator's `dlq replay` judges a request again, and replaces its row.
CREATE TABLE IF NOT EXISTS prereg.sync_rejection (
    transaction_id varchar(36) NOT NULL,
    body_sha256    char(64)    NOT NULL,
    error_code     varchar(64) NOT NULL,
    rejected_at    timestamp   NOT NULL,
    CONSTRAINT pk_sync_rejection PRIMARY KEY (transaction_id, body_sha256)
);
CREATE INDEX IF NOT EXISTS ix_sync_rejection_rejected_at ON prereg.sync_rejection (rejected_at);
