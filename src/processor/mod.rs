//! The processing rules of the contract, independent of AMQP: given a request's body and
//! properties, decide its outcome and make it durable. The worker turns the decision into
//! replies, dead-letter copies and acks.

mod answers;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::{
    config::StorageSettings,
    message::{Envelope, ErrorCode, Identity, Reply, RequestValidator, ValidationRules},
    storage::{
        StorageError,
        batching::Batcher,
        model::{NewTransaction, StoreOutcome},
        transactions::{Lookup, Lookups, Stores},
    },
    telemetry::Metrics,
};

/// A request as the processor needs it: raw body plus the properties that matter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) content_type: Option<&'a str>,
    /// The registration processor's ID, `unknown` when absent.
    pub(crate) app_id: &'a str,
    /// Which attempt of the request this is, and so what is judged.
    pub(crate) trial: Trial,
}

/// Which attempt of a request a delivery is. The first verdict on a request stands for every
/// later attempt of it; only an operator's replay judges it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trial {
    /// The first attempt: judged in full, its age against the moment it arrived (so time spent
    /// held in an outage does not age it).
    First { arrived: DateTime<Utc> },
    /// The first attempt after a `dlq replay`: judged again, but for its age (it was judged
    /// at its first attempt, and a replay would otherwise always find it too old).
    Replayed,
    /// A later attempt (a redelivery, a copy back from a retry tier): a rejection given
    /// before stands.
    Again,
}

impl Trial {
    /// When `validation.max_request_age` is judged against; `None`: not at all.
    fn age_judged_at(self) -> Option<DateTime<Utc>> {
        match self {
            Trial::First { arrived } => Some(arrived),
            Trial::Replayed | Trial::Again => None,
        }
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Stored,
    Duplicate,
    Rejected(ErrorCode),
}

#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) reply: Reply,
    pub(crate) verdict: Verdict,
}

pub(crate) struct Processor {
    pool: Pool,
    lookups: Batcher<Lookups>,
    stores: Batcher<Stores>,
    validator: RequestValidator,
    require_known_application: bool,
    storage: StorageSettings,
    metrics: Metrics,
}

impl Processor {
    pub(crate) fn new(
        pool: Pool,
        validation: &ValidationRules,
        storage: StorageSettings,
        metrics: Metrics,
    ) -> Processor {
        Processor {
            lookups: Batcher::start(Lookups(pool.clone())),
            stores: Batcher::start(Stores::new(pool.clone())),
            pool,
            validator: RequestValidator::new(validation),
            require_known_application: validation.require_known_application,
            storage,
            metrics,
        }
    }

    /// Rules 1 to 4 of the contract. Idempotent: running it again for the same request after
    /// any failure, or after a crash after commit, yields the same reply and writes nothing new.
    pub(crate) async fn process(
        &self,
        incoming: &Incoming<'_>,
        identity: &Identity,
    ) -> Result<Decision, StorageError> {
        let now = Utc::now();
        if let Some(standing) = self.standing_verdict(incoming.trial, identity).await? {
            return Ok(standing);
        }
        let transaction_id = identity.transaction_id.as_str();
        // Validation is pure, so it runs first and the two reads it allows (the transaction
        // lookup and the known-application check) go to the server together, batched with
        // those of the other deliveries in flight. The contract's order still decides: a
        // recorded transaction (rule 1) wins over any validation error (rule 2).
        let validated = self.validator.validate(
            incoming.content_type,
            identity.message_id_ok(),
            incoming.body,
            incoming.trial.age_judged_at(),
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
            transaction_id: identity.message_id_ok().then(|| transaction_id.to_owned()),
            prids: (self.require_known_application && !well_formed.is_empty())
                .then_some(well_formed),
        };
        let looked_up = self.lookups.submit(lookup).await?;
        if let Some(existing) = looked_up.existing {
            return self.answer_existing(incoming, identity, existing).await;
        }
        let envelope = match validated {
            Ok(envelope) => envelope,
            Err(code) => return self.reject(incoming, identity, code).await,
        };
        let known = looked_up.known;
        self.store(incoming, identity, envelope, known, well_formed_count, now)
            .await
    }

    /// Rules 3 and 4 for a valid request: the PRIDs accepted (well-formed, and in `known` when
    /// that was checked) are stored with the success reply; none accepted is a rejection.
    async fn store(
        &self,
        incoming: &Incoming<'_>,
        identity: &Identity,
        envelope: Envelope,
        known: Option<HashSet<String>>,
        well_formed_count: usize,
        now: DateTime<Utc>,
    ) -> Result<Decision, StorageError> {
        let transaction_id = identity.transaction_id.as_str();
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
                self.answer_existing(incoming, identity, existing).await
            }
        }
    }
}
