//! The audit trail: who (registration processor ID), which transaction, what happened. Never a
//! PRID or any applicant detail: the row has no column that could hold one.

use chrono::NaiveDateTime;
use deadpool_postgres::GenericClient;

use super::StorageError;

/// Audit events of the contract's outcome table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditEvent {
    Stored,
    Duplicate,
    Rejected,
    DeadLettered,
    ReplyUnroutable,
    /// A dead-lettered message moved back to the request exchange by `dlq replay`.
    Replayed,
    /// A dead-lettered message removed by `dlq delete`.
    Deleted,
    /// One `dlq replay` or `dlq delete` run (transaction ID empty).
    DlqReplayRun,
    DlqDeleteRun,
    /// One run of the consumed-status job; its outcome is the run status.
    ConsumedJobRun,
    /// One scheduled end-of-day report (`report.schedule`).
    DailyReport,
}

impl AuditEvent {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Stored => "STORED",
            AuditEvent::Duplicate => "DUPLICATE",
            AuditEvent::Rejected => "REJECTED",
            AuditEvent::DeadLettered => "DEAD_LETTERED",
            AuditEvent::ReplyUnroutable => "REPLY_UNROUTABLE",
            AuditEvent::Replayed => "REPLAYED",
            AuditEvent::Deleted => "DLQ_DELETED",
            AuditEvent::DlqReplayRun => "DLQ_REPLAY_RUN",
            AuditEvent::DlqDeleteRun => "DLQ_DELETE_RUN",
            AuditEvent::ConsumedJobRun => "CONSUMED_JOB_RUN",
            AuditEvent::DailyReport => "DAILY_REPORT",
        }
    }

    pub(super) fn outcome(self) -> &'static str {
        match self {
            AuditEvent::Stored
            | AuditEvent::Duplicate
            | AuditEvent::Replayed
            | AuditEvent::Deleted
            | AuditEvent::DlqReplayRun
            | AuditEvent::DlqDeleteRun
            | AuditEvent::ConsumedJobRun
            | AuditEvent::DailyReport => "SUCCESS",
            AuditEvent::ReplyUnroutable => "WARNING",
            AuditEvent::Rejected | AuditEvent::DeadLettered => "FAILURE",
        }
    }
}

/// One audit row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditRecord<'a> {
    pub(crate) at: NaiveDateTime,
    pub(crate) app_id: &'a str,
    /// `None` for events about a run rather than one transaction (a DLQ replay run).
    pub(crate) transaction_id: Option<&'a str>,
    pub(crate) event: AuditEvent,
    pub(crate) error_code: Option<&'static str>,
}

/// Writes the row on `client`, which may be a transaction so the row commits with the data.
pub(crate) async fn write(
    client: &impl GenericClient,
    record: &AuditRecord<'_>,
) -> Result<(), StorageError> {
    write_with_outcome(client, record, record.event.outcome(), None).await
}

/// Writes many rows with one statement (the stores of one group commit).
pub(crate) async fn write_all(
    client: &impl GenericClient,
    records: &[AuditRecord<'_>],
) -> Result<(), StorageError> {
    let statement = client
        .prepare_cached(
            r#"
            INSERT INTO prereg.sync_audit
                (event_time, app_id, transaction_id, event, outcome, error_code)
            SELECT * FROM unnest($1::timestamp[], $2::varchar[], $3::varchar[], $4::varchar[],
                                 $5::varchar[], $6::varchar[])
            "#,
        )
        .await?;
    let times: Vec<NaiveDateTime> = records.iter().map(|r| r.at).collect();
    let apps: Vec<&str> = records.iter().map(|r| r.app_id).collect();
    let ids: Vec<Option<&str>> = records.iter().map(|r| r.transaction_id).collect();
    let events: Vec<&str> = records.iter().map(|r| r.event.as_str()).collect();
    let outcomes: Vec<&str> = records.iter().map(|r| r.event.outcome()).collect();
    let codes: Vec<Option<&str>> = records.iter().map(|r| r.error_code).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&times, &apps, &ids, &events, &outcomes, &codes];
    client.execute(&statement, &params).await?;
    Ok(())
}

/// The statement inserting one row: event time, app ID, transaction ID, event, outcome, code,
/// detail (NULL but for an operator's run).
pub(super) const INSERT_ONE: &str = r#"
    INSERT INTO prereg.sync_audit
        (event_time, app_id, transaction_id, event, outcome, error_code, detail)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
"#;

/// Like [`write()`] with an explicit outcome (a job run's status, a `dlq` run's completion)
/// and, for an operator's run (`dlq replay`, `dlq delete`), its `detail`: what was asked and
/// done, never a PRID.
pub(crate) async fn write_with_outcome(
    client: &impl GenericClient,
    record: &AuditRecord<'_>,
    outcome: &str,
    detail: Option<&serde_json::Value>,
) -> Result<(), StorageError> {
    let statement = client.prepare_cached(INSERT_ONE).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &record.at,
        &record.app_id,
        &record.transaction_id,
        &record.event.as_str(),
        &outcome,
        &record.error_code,
        &detail,
    ];
    client.execute(&statement, &params).await?;
    Ok(())
}
