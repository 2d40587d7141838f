//! The processing rules of the contract, independent of AMQP: given a request's body and
//! properties, decide its outcome and make it durable. The consumer turns the decision into
//! replies, dead-letter copies and acks.

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::{
    config::{StorageSettings, ValidationSettings},
    message::{ErrorCode, Identity, Reply, ReplyKind, RequestValidator},
    retry::FailureClass,
    storage::{
        StorageError,
        audit::{self, AuditEvent, AuditRecord},
        batching::Batcher,
        transactions::{Lookup, Lookups, NewTransaction, StoreOutcome, StoredTransaction, Stores},
    },
    telemetry::Metrics,
};

/// A request as the processor needs it: raw body plus the properties that matter.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    /// The registration processor's ID, `unknown` when absent.
    pub app_id: &'a str,
    /// When `validation.max_request_age` is judged against: the moment of the request's first
    /// attempt, so time spent held in an outage does not age it. `None` for a request that has
    /// been attempted before (a redelivery, a retry tier, a replay): it was judged then, and is
    /// not judged again.
    pub age_judged_at: Option<DateTime<Utc>>,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Stored,
    Duplicate,
    Rejected(ErrorCode),
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub reply: Reply,
    pub verdict: Verdict,
}

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

pub struct Processor {
    pool: Pool,
    lookups: Batcher<Lookups>,
    stores: Batcher<Stores>,
    validator: RequestValidator,
    require_known_application: bool,
    storage: StorageSettings,
    metrics: Metrics,
}

impl Processor {
    pub fn new(
        pool: Pool,
        validation: &ValidationSettings,
        storage: StorageSettings,
        metrics: Metrics,
    ) -> Processor {
        Processor {
            lookups: Batcher::start(Lookups(pool.clone())),
            stores: Batcher::start(Stores(pool.clone())),
            pool,
            validator: RequestValidator::new(validation),
            require_known_application: validation.require_known_application,
            storage,
            metrics,
        }
    }

    /// Rules 1 to 4 of the contract. Idempotent: running it again for the same request after
    /// any failure, or after a crash after commit, yields the same reply and writes nothing new.
    pub async fn process(
        &self,
        incoming: &Incoming<'_>,
        identity: &Identity,
    ) -> Result<Decision, StorageError> {
        let now = Utc::now();
        let transaction_id = identity.transaction_id.as_str();
        // Validation is pure, so it runs first and the two reads it allows (the transaction
        // lookup and the known-application check) go to the server together, batched with
        // those of the other deliveries in flight. The contract's order still decides: a
        // recorded transaction (rule 1) wins over any validation error (rule 2).
        let validated = self.validator.validate(
            incoming.content_type,
            identity.message_id_ok,
            incoming.body,
            incoming.age_judged_at,
        );
        let well_formed: Vec<String> = validated
            .as_ref()
            .map(|envelope| {
                envelope
                    .prids
                    .iter()
                    .filter(|prid| self.validator.prid_format_ok(prid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let well_formed_count = well_formed.len();
        let lookup = Lookup {
            transaction_id: identity.message_id_ok.then(|| transaction_id.to_owned()),
            prids: (self.require_known_application && !well_formed.is_empty())
                .then_some(well_formed),
        };
        let looked_up = self.lookups.submit(lookup).await?;
        if let Some(existing) = looked_up.existing {
            return self.settle_existing(incoming, identity, existing).await;
        }
        let known = looked_up.known;
        let envelope = match validated {
            Ok(envelope) => envelope,
            Err(code) => return self.reject(incoming, identity, code).await,
        };
        // One pass in request order: rejected PRIDs are listed as they were sent. The known
        // set holds only well-formed PRIDs, so when it was checked it answers both rules.
        let total = envelope.prids.len();
        let (stored, rejected): (Vec<String>, Vec<String>) =
            envelope.prids.into_iter().partition(|prid| match &known {
                Some(known) => known.contains(prid),
                None => self.validator.prid_format_ok(prid),
            });
        if stored.is_empty() {
            return self
                .reject(incoming, identity, ErrorCode::InvalidPreRegistrationIds)
                .await;
        }
        let malformed = total - well_formed_count;
        let unknown = well_formed_count - stored.len();
        let reply = Reply::success(transaction_id, &stored, &rejected, now);
        let stored_count = stored.len() as u64;
        let new = NewTransaction {
            transaction_id: transaction_id.to_owned(),
            app_id: incoming.app_id.to_owned(),
            body_sha256: identity.body_sha256.clone(),
            received_at: now.naive_utc(),
            request_time: envelope.request_time,
            prids: stored,
            reply_body: reply.body.clone(),
            lang_code: self.storage.lang_code.clone(),
            created_by: self.storage.created_by.clone(),
        };
        match self.stores.submit(new).await? {
            StoreOutcome::Stored { newly_processed } => {
                let already = stored_count - newly_processed;
                self.metrics
                    .prids_stored(newly_processed, already, malformed, unknown);
                Ok(Decision {
                    reply,
                    verdict: Verdict::Stored,
                })
            }
            StoreOutcome::AlreadyRecorded(existing) => {
                self.settle_existing(incoming, identity, existing).await
            }
        }
    }

    /// Rule 1: the same body again is a duplicate (the stored reply, byte for byte); another
    /// body under the same ID is a conflict.
    async fn settle_existing(
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
    pub async fn answer_if_stored(
        &self,
        app_id: &str,
        identity: &Identity,
    ) -> Result<Option<Decision>, StorageError> {
        if !identity.message_id_ok {
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

    async fn reject(
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
    pub async fn record(
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
        audit::write(&client, &record).await
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
                self.metrics.audit_write_failed(event.as_str(), &err);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}
