-- The consumed-status job: run history, and an index that finds pending PRIDs without a scan.

CREATE TABLE IF NOT EXISTS prereg.consumed_job_run (
    id           bigserial   NOT NULL,
    started_at   timestamp   NOT NULL,
    finished_at  timestamp,
    status       varchar(16) NOT NULL,
    triggered_by varchar(16) NOT NULL,
    selected     integer     NOT NULL DEFAULT 0,
    moved        integer     NOT NULL DEFAULT 0,
    not_found    integer     NOT NULL DEFAULT 0,
    failed       integer     NOT NULL DEFAULT 0,
    CONSTRAINT pk_consumed_job_run PRIMARY KEY (id)
);

CREATE INDEX IF NOT EXISTS idx_prcpl_pending ON prereg.processed_prereg_list (prereg_id)
    WHERE status_comments = 'Processed by registration processor';
