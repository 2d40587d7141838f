//! The answers decided without storing anything new: a transaction already recorded
//! (duplicate or conflict), a rejection, the stored answer the error paths look for first; and
//! the audit rows that record them.

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;

use super::{Decision, Incoming, Processor, Trial, Verdict};
use crate::{
    message::{ErrorCode, Identity, Reply, ReplyKind},
    retry::FailureClass,
    storage::{
        StorageError,
        audit::{self, AuditEvent, AuditRecord},
        model::StoredTransaction,
        rejections,
        transactions::Lookup,
    },
    telemetry::labels::LabelSet,
};

impl Decision {
    /// The recorded transaction's reply, byte for byte.
    fn duplicate(existing: StoredTransaction) -> Decision {
        Decision {
            reply: Reply {
                kind: ReplyKind::Ack,
                body: existing.reply_body,
            },
            verdict: Verdict::Duplicate,
        }
    }
}

impl Processor {
    /// The rejection standing for a later attempt of a rejected request (its error reply
    /// again, with no new audit row); a replay's first attempt clears it, to be judged again.
    pub(super) async fn standing_verdict(
        &self,
        trial: Trial,
        identity: &Identity,
    ) -> Result<Option<Decision>, StorageError> {
        let transaction_id = identity.transaction_id.as_str();
        let body = identity.body_sha256.as_str();
        let client = match trial {
            // An unusable `message_id` is rejected again at every attempt anyway, and its
            // body-derived ID may be another request's: no verdict is kept under it.
            _ if !identity.message_id_ok() => return Ok(None),
            Trial::First { .. } => return Ok(None),
            Trial::Replayed | Trial::Again => self.pool.get().await?,
        };
        if trial == Trial::Replayed {
            rejections::forget(&client, transaction_id, body).await?;
            return Ok(None);
        }
        let standing = rejections::standing(&client, transaction_id, body).await?;
        Ok(standing
            .as_deref()
            .and_then(ErrorCode::from_label)
            .map(|code| Decision {
                reply: Reply::error(code, Utc::now()),
                verdict: Verdict::Rejected(code),
            }))
    }

    /// Rule 1: the same body again is a duplicate (the stored reply, byte for byte); another
    /// body under the same ID is a conflict.
    pub(super) async fn answer_existing(
        &self,
        incoming: &Incoming<'_>,
        identity: &Identity,
        existing: StoredTransaction,
    ) -> Result<Decision, StorageError> {
        if existing.body_sha256 != identity.body_sha256 {
            return self
                .reject(incoming, identity, ErrorCode::TransactionConflict)
                .await;
        }
        self.record_decided(incoming.app_id, identity, AuditEvent::Duplicate, None)
            .await?;
        Ok(Decision::duplicate(existing))
    }

    /// The stored answer when this request's transaction is already recorded (same body): for
    /// the paths that would otherwise answer with an error (the delivery limit, a spent retry
    /// budget), since no error reply is ever sent for a stored transaction. `None` when it is
    /// not recorded, or recorded for another body.
    pub(crate) async fn answer_if_stored(
        &self,
        app_id: &str,
        identity: &Identity,
    ) -> Result<Option<Decision>, StorageError> {
        if !identity.message_id_ok() {
            return Ok(None); // nothing is ever recorded under an unusable message_id
        }
        let lookup = Lookup {
            transaction_id: Some(identity.transaction_id.as_str().to_owned()),
            prids: None,
        };
        match self.lookups.submit(lookup).await?.existing {
            Some(existing) if existing.body_sha256 == identity.body_sha256 => {
                self.record_decided(app_id, identity, AuditEvent::Duplicate, None)
                    .await?;
                Ok(Some(Decision::duplicate(existing)))
            }
            _ => Ok(None),
        }
    }

    pub(super) async fn reject(
        &self,
        incoming: &Incoming<'_>,
        identity: &Identity,
        code: ErrorCode,
    ) -> Result<Decision, StorageError> {
        self.record_decided(incoming.app_id, identity, AuditEvent::Rejected, Some(code))
            .await?;
        Ok(Decision {
            reply: Reply::error(code, Utc::now()),
            verdict: Verdict::Rejected(code),
        })
    }

    /// An audit row for this request, on a pooled connection of its own (outside any store
    /// transaction): rejections, duplicates, and outcomes decided outside
    /// [`Processor::process`] (dead-lettering, an unroutable reply).
    pub(crate) async fn record(
        &self,
        app_id: &str,
        identity: &Identity,
        event: AuditEvent,
        code: Option<ErrorCode>,
    ) -> Result<(), StorageError> {
        let client = self.pool.get().await?;
        let record = AuditRecord {
            at: Utc::now().naive_utc(),
            app_id,
            transaction_id: Some(identity.transaction_id.as_str()),
            event,
            error_code: code.map(ErrorCode::code),
        };
        match event {
            // The verdict stands from here on: recorded with its audit row.
            AuditEvent::Rejected if identity.message_id_ok() => {
                rejections::record(&client, &record, &identity.body_sha256).await
            }
            _ => audit::write(&client, &record).await,
        }
    }

    /// The audit row of an outcome already decided (a duplicate, a rejection). A transient
    /// failure to write it is retried briefly, then logged and counted: it must not change the
    /// answer (through the retry tiers it would end as `PRG_DATA_SYNC_012`, an error reply for
    /// a stored transaction or in place of the validation code already decided). An outage
    /// still holds the delivery: the same decision is made again once the database is back.
    async fn record_decided(
        &self,
        app_id: &str,
        identity: &Identity,
        event: AuditEvent,
        code: Option<ErrorCode>,
    ) -> Result<(), StorageError> {
        let write = || self.record(app_id, identity, event, code);
        let briefly = ExponentialBuilder::default()
            .with_max_times(2)
            .with_jitter();
        match write
            .retry(briefly)
            .when(|err| err.class() == FailureClass::Transient)
            .await
        {
            Err(err) if err.class() == FailureClass::InfrastructureDown => Err(err),
            Err(err) => {
                self.metrics.audit_write_failed(event, &err);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}
