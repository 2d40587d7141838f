//! The audit rows of operator actions: one per message replayed or deleted, one per run.

use chrono::Utc;

use super::{ReworkOptions, Row, Summary};
use crate::message::registration_processor_id;
use crate::{
    config::Settings,
    message::TransactionId,
    storage::{
        self,
        audit::{self, AuditEvent, AuditRecord},
    },
};

/// Audit rows of an operator command: one per message acted on, one for the run.
pub(super) struct Auditor {
    client: deadpool_postgres::Client,
}

impl Auditor {
    pub(super) async fn connect(settings: &Settings) -> anyhow::Result<Auditor> {
        let pool = storage::build_pool(&settings.database)?;
        Ok(Auditor {
            client: pool.get().await?,
        })
    }

    /// The message's IDs are the publisher's: made storable as the worker stores them (a
    /// `message_id` that is no valid transaction ID is left out).
    pub(super) async fn message(&self, row: &Row, event: AuditEvent) -> anyhow::Result<()> {
        let app_id = registration_processor_id(row.app_id.as_deref());
        let transaction_id = row.transaction_id.as_deref().and_then(TransactionId::parse);
        self.write(
            &app_id,
            transaction_id.as_ref().map(TransactionId::as_str),
            event,
        )
        .await
    }

    /// The run's own row: the operator, what was asked (filter, limit) and what was done.
    pub(super) async fn run(
        &self,
        event: AuditEvent,
        options: &ReworkOptions,
        summary: &Summary,
        completed: bool,
    ) -> anyhow::Result<()> {
        let record = AuditRecord {
            at: Utc::now().naive_utc(),
            app_id: &options.operator,
            transaction_id: None,
            event,
            error_code: None,
        };
        let detail = serde_json::json!({
            "filter": options.filter,
            "limit": options.limit,
            "examined": summary.examined,
            "matched": summary.matched,
            "acted": summary.acted,
            "kept": summary.kept,
            "completed": completed,
        });
        let outcome = if completed { "SUCCESS" } else { "FAILURE" };
        Ok(audit::write_with_outcome(&self.client, &record, outcome, Some(&detail)).await?)
    }

    async fn write(
        &self,
        app_id: &str,
        transaction_id: Option<&str>,
        event: AuditEvent,
    ) -> anyhow::Result<()> {
        let record = AuditRecord {
            at: Utc::now().naive_utc(),
            app_id,
            transaction_id,
            event,
            error_code: None,
        };
        Ok(audit::write(&self.client, &record).await?)
    }
}
