//! Crash-loop isolation: redelivered deliveries are tried one at a time, culprits last.
//!
//! Why: a crash returns the whole prefetch window to the queue and the broker counts a delivery
//! for each message in it, so innocent neighbours of a crashing message would reach the delivery
//! limit with it. Tried alone, only the culprit is in flight when the worker dies, and its
//! recorded attempt puts it last next time: the neighbours are answered and acked first, and
//! only the culprit keeps coming back until the delivery limit.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::OwnedSemaphorePermit, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{
    handler::{Attempt, Handler},
    request::InboundRequest,
};
use crate::storage::suspects;

/// How long the dispatcher waits after the last delivery before starting a suspect, so the
/// whole redelivered prefetch window is buffered first.
const ARRIVALS_QUIET: Duration = Duration::from_millis(200);

/// A suspect with the concurrency permit it was taken under.
type Suspect = (InboundRequest, OwnedSemaphorePermit);

/// Redelivered deliveries (`x-delivery-count` > 0) of one session, waiting to be tried in
/// isolation, and the run trying the last batch of them (one run at a time).
#[derive(Default)]
pub(super) struct Suspects {
    waiting: Vec<Suspect>,
    last_arrival: Option<tokio::time::Instant>,
    running: JoinSet<()>,
}

impl Suspects {
    pub(super) fn push(&mut self, request: InboundRequest, permit: OwnedSemaphorePermit) {
        self.waiting.push((request, permit));
        self.last_arrival = Some(tokio::time::Instant::now());
    }

    /// The dispatcher's side of the suspects: resolves once a finished run is reaped, or once
    /// the waiting suspects are due (none running, and no arrival for [`ARRIVALS_QUIET`]) and a
    /// run for them has started. Cancel-safe: nothing changes before it resolves.
    pub(super) async fn step(&mut self, handler: &Arc<Handler>, cancel: &CancellationToken) {
        if !self.running.is_empty() {
            self.running.join_next().await;
            return;
        }
        match (self.waiting.is_empty(), self.last_arrival) {
            (false, Some(last)) => tokio::time::sleep_until(last + ARRIVALS_QUIET).await,
            _ => std::future::pending().await,
        }
        let batch = std::mem::take(&mut self.waiting);
        self.running
            .spawn(try_one_at_a_time(handler.clone(), batch, cancel.clone()));
    }

    /// The session is over: the suspects not started go back to the queue with the channel.
    pub(super) fn release(&mut self) {
        self.waiting.clear();
    }

    /// Waits for the run in progress, if any.
    pub(super) async fn finish(&mut self) {
        while self.running.join_next().await.is_some() {}
    }

    pub(super) fn abort(&mut self) {
        self.running.abort_all();
    }
}

/// Tries redelivered deliveries one at a time, the never-tried-alone first (in arrival order),
/// each attempt recorded durably before it starts.
async fn try_one_at_a_time(
    handler: Arc<Handler>,
    mut batch: Vec<Suspect>,
    cancel: CancellationToken,
) {
    let pool = handler.pool();
    let ids: Vec<&str> = batch
        .iter()
        .map(|(request, _)| request.identity.transaction_id.as_str())
        .collect();
    let lookup = || async { suspects::attempts(&pool.get().await?, &ids).await };
    let attempts = match handler.with_database(lookup, &cancel).await {
        Attempt::Cancelled => return, // session over: the deliveries go back with the channel
        Attempt::Done(Ok(attempts)) => attempts,
        Attempt::Done(Err(err)) => {
            tracing::warn!(error = %err, "suspect attempts unknown; trying in arrival order");
            HashMap::new()
        }
    };
    drop(ids);
    // Stable: equal attempts keep arrival order.
    batch.sort_by_key(|(request, _)| {
        attempts
            .get(request.identity.transaction_id.as_str())
            .copied()
            .unwrap_or(0)
    });
    for (request, permit) in batch {
        let id = request.identity.transaction_id.to_string();
        let mark = || async { suspects::mark_attempt(&pool.get().await?, &id).await };
        match handler.with_database(mark, &cancel).await {
            Attempt::Cancelled => return,
            Attempt::Done(Err(err)) => tracing::warn!(error = %err, "suspect attempt not recorded"),
            Attempt::Done(Ok(())) => {}
        }
        tracing::info!(transaction_id = %id, "redelivered request tried in isolation");
        handler.clone().run(request, permit, cancel.clone()).await;
        let clear = || async { suspects::clear(&pool.get().await?, &id).await };
        if let Attempt::Done(Err(err)) = handler.with_database(clear, &cancel).await {
            tracing::warn!(error = %err, "suspect record not cleared");
        }
    }
}
