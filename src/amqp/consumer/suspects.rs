//! Crash-loop isolation: redelivered deliveries are tried one at a time, culprits last.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::{Consumer, Job};
use crate::storage::suspects;

/// How long the dispatcher waits after the last delivery before starting a suspect, so the
/// whole redelivered prefetch window is buffered first.
const SUSPECT_SETTLE: Duration = Duration::from_millis(200);

/// Redelivered deliveries (`x-delivery-count` > 0) waiting to be tried in isolation: one of
/// them may have crashed the worker (see [`Consumer::run_suspects`]).
#[derive(Default)]
pub(super) struct Suspects {
    pub(super) waiting: Vec<(Job, OwnedSemaphorePermit)>,
    last_arrival: Option<tokio::time::Instant>,
}

impl Suspects {
    pub(super) fn push(&mut self, job: Job, permit: OwnedSemaphorePermit) {
        self.waiting.push((job, permit));
        self.last_arrival = Some(tokio::time::Instant::now());
    }

    /// Resolves when a waiting suspect may start: `idle` (none running), and the window has
    /// settled.
    pub(super) async fn next_due(&self, idle: bool) {
        match (idle, self.waiting.is_empty(), self.last_arrival) {
            (true, false, Some(last)) => tokio::time::sleep_until(last + SUSPECT_SETTLE).await,
            _ => std::future::pending().await,
        }
    }
}

impl Consumer {
    /// Tries redelivered deliveries one at a time, the never-tried-alone first (in arrival
    /// order), each attempt recorded durably before it starts.
    ///
    /// Why: a crash returns the whole prefetch window to the queue and the broker counts a
    /// delivery for each message in it, so innocent neighbours of a crashing message would reach
    /// the delivery limit with it. Tried alone, only the culprit is in flight when the worker
    /// dies, and its recorded attempt puts it last next time: the neighbours are answered and
    /// acked first, and only the culprit keeps coming back until the delivery limit.
    pub(super) async fn run_suspects(
        self: Arc<Self>,
        mut batch: Vec<(Job, OwnedSemaphorePermit)>,
        cancel: CancellationToken,
    ) {
        let pool = self.processor.pool();
        let ids: Vec<&str> = batch
            .iter()
            .map(|(job, _)| job.identity.transaction_id.as_str())
            .collect();
        let lookup = || async { suspects::attempts(&pool.get().await?, &ids).await };
        let attempts = match self.with_database(lookup, &cancel).await {
            None => return, // session over: the deliveries go back with the channel
            Some(Ok(attempts)) => attempts,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "suspect attempts unknown; trying in arrival order");
                HashMap::new()
            }
        };
        drop(ids);
        // Stable: equal attempts keep arrival order.
        batch.sort_by_key(|(job, _)| {
            attempts
                .get(job.identity.transaction_id.as_str())
                .copied()
                .unwrap_or(0)
        });
        for (job, permit) in batch {
            let id = job.identity.transaction_id.to_string();
            let mark = || async { suspects::mark_attempt(&pool.get().await?, &id).await };
            match self.with_database(mark, &cancel).await {
                None => return,
                Some(Err(err)) => tracing::warn!(error = %err, "suspect attempt not recorded"),
                Some(Ok(())) => {}
            }
            tracing::info!(transaction_id = %id, "redelivered request tried in isolation");
            self.clone().run_job(job, permit, cancel.clone()).await;
            let clear = || async { suspects::clear(&pool.get().await?, &id).await };
            if let Some(Err(err)) = self.with_database(clear, &cancel).await {
                tracing::warn!(error = %err, "suspect record not cleared");
            }
        }
    }
}
