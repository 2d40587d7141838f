-- prereg-sync's own tables. Additive only: old and new workers must run side by side.

-- One row per transaction ID ever stored: the idempotency key. reply_body is the exact reply
-- sent, re-sent byte for byte to a redelivery or a duplicate publish.
CREATE TABLE IF NOT EXISTS prereg.sync_transaction (
    transaction_id varchar(36)  NOT NULL,
    app_id         varchar(256) NOT NULL,
    body_sha256    char(64)     NOT NULL,
    received_at    timestamp    NOT NULL,
    request_time   timestamp    NOT NULL,
    stored_count   integer      NOT NULL,
    reply_body     bytea        NOT NULL,
    CONSTRAINT pk_sync_transaction PRIMARY KEY (transaction_id)
);
-- Retention (maintenance purge-transactions) deletes by age.
CREATE INDEX IF NOT EXISTS idx_sync_transaction_received_at ON prereg.sync_transaction (received_at);

-- Audit trail: never a PRID or applicant detail, only who, which transaction, what happened.
CREATE TABLE IF NOT EXISTS prereg.sync_audit (
    id             bigserial    NOT NULL,
    event_time     timestamp    NOT NULL,
    app_id         varchar(256) NOT NULL,
    transaction_id varchar(36),
    event          varchar(32)  NOT NULL,
    outcome        varchar(16)  NOT NULL,
    error_code     varchar(64),
    CONSTRAINT pk_sync_audit PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_sync_audit_event_time ON prereg.sync_audit (event_time);
CREATE INDEX IF NOT EXISTS idx_sync_audit_transaction_id ON prereg.sync_audit (transaction_id);

-- The interface table is append-only by (prereg_id, received_dtimes); retention purges by age.
CREATE INDEX IF NOT EXISTS idx_iprcpl_cr_dtimes ON prereg.intf_processed_prereg_list (cr_dtimes);
