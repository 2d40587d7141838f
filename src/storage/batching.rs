//! Batching: the database work of concurrent deliveries shares round trips and commits.
//!
//! Why: with one PRID per request the cost is not the rows but the per-request overhead: a
//! round trip (and a backend wake-up) per statement, a `COMMIT` with its WAL flush per request.
//! A [`Batcher`] is one task that takes every request waiting at that moment (up to
//! [`MAX_BATCH`]) and hands them to its [`BatchHandler`] together: the lookups of many
//! deliveries become one pipelined pair of queries, their stores one transaction (group
//! commit). Each delivery awaits its own answer, given only after the batch is done, so a
//! store is never acknowledged before its commit.
//!
//! If a batch fails for the data of one request (a constraint or value error, a row-level
//! security refusal), its requests are handled again one by one, so one request's bad data never
//! fails its neighbours. If it fails for a passing reason (a statement timeout, a serialization
//! failure or deadlock, the database unreachable), every request gets that failure at once and
//! retries under its own back-off, so the batch comes round again whole: going one by one would
//! wait out the same timeout once per request (64 requests and a 30 s statement timeout would
//! hold the last delivery past the broker's 30 min `consumer_timeout`). A batch that succeeded as a whole
//! may still answer one request with an error of its own (see [`BatchHandler::handle`]): that
//! request alone is retried, its neighbours keep their committed answers.
//!
//! The task never dies with a handler: a panic inside a batch fails that batch's requests with
//! a transient error (their transaction was rolled back, or committed and then found by the
//! lookup when they are retried) and the task goes on with the next batch, so a bug hit by one
//! request can never wedge every other delivery behind a batcher that is gone.

use std::{future::Future, panic::AssertUnwindSafe};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// Requests handled together at most (bounded by the deliveries in flight anyway).
pub(crate) const MAX_BATCH: usize = 256;

/// What a batch does: one answer per input, in order, or one error for the whole batch. An
/// answer may itself be an error when the batch as a whole succeeded but one input's outcome is
/// not known (its row vanished after the commit, say).
pub(crate) trait BatchHandler: Send + Sync + 'static {
    type Input: Send + Sync + 'static;
    type Output: Send + 'static;

    fn handle(
        &self,
        inputs: &[Self::Input],
    ) -> impl Future<Output = Result<Vec<Answer<Self>>, StorageError>> + Send;
}

/// One input's answer.
pub(crate) type Answer<H> = Result<<H as BatchHandler>::Output, StorageError>;

/// An input waiting for its batch, with where its answer goes.
struct Pending<H: BatchHandler> {
    input: H::Input,
    respond: oneshot::Sender<Answer<H>>,
}

/// The handle deliveries use.
pub(crate) struct Batcher<H: BatchHandler> {
    queue: mpsc::Sender<Pending<H>>,
}

impl<H: BatchHandler> Batcher<H> {
    /// Starts the batching task; it ends when the handle is dropped.
    pub(crate) fn start(handler: H) -> Batcher<H> {
        let (queue, receiver) = mpsc::channel(MAX_BATCH);
        tokio::spawn(run(handler, receiver));
        Batcher { queue }
    }

    /// Queues `input` for the next batch and returns its answer once that batch is done.
    pub(crate) async fn submit(&self, input: H::Input) -> Answer<H> {
        let (respond, answer) = oneshot::channel();
        let gone = || StorageError::Unavailable("the batching task stopped".into());
        self.queue
            .send(Pending { input, respond })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run<H: BatchHandler>(handler: H, mut receiver: mpsc::Receiver<Pending<H>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (inputs, responders): (Vec<H::Input>, Vec<_>) = batch
            .drain(..)
            .map(|pending: Pending<H>| (pending.input, pending.respond))
            .unzip();
        let answers = match guarded(&handler, &inputs).await {
            Ok(answers) => answers,
            Err(err) if inputs.len() == 1 || !err.class().may_be_the_datas() => {
                // The first request gets the error itself, the others its description (a
                // database error cannot be cloned), classified alike.
                let class = err.class();
                let description = err.to_string();
                std::iter::once(Err(err))
                    .chain(
                        (1..inputs.len())
                            .map(|_| Err(StorageError::OfBatch(class, description.clone()))),
                    )
                    .collect()
            }
            Err(err) => {
                tracing::debug!(error = %err, size = inputs.len(), "batch failed; handling its requests one by one");
                let mut answers = Vec::with_capacity(inputs.len());
                for input in inputs.chunks(1) {
                    answers.push(guarded(&handler, input).await.and_then(|mut answers| {
                        answers.pop().unwrap_or(Err(StorageError::Raced(
                            "a batch of one returned no answer",
                        )))
                    }));
                }
                answers
            }
        };
        for (respond, answer) in responders.into_iter().zip(answers) {
            #[allow(
                clippy::let_underscore_must_use,
                reason = "a delivery that stopped waiting (its session was lost) is simply gone"
            )]
            let _ = respond.send(answer);
        }
    }
}

/// The handler's answers, or a transient error for every input if it panicked.
async fn guarded<H: BatchHandler>(
    handler: &H,
    inputs: &[H::Input],
) -> Result<Vec<Answer<H>>, StorageError> {
    match AssertUnwindSafe(handler.handle(inputs))
        .catch_unwind()
        .await
    {
        Ok(answers) => answers,
        Err(_) => {
            // The payload is not logged: a panic message may quote the data it choked on.
            tracing::error!(
                size = inputs.len(),
                "a database batch panicked; its requests will be retried"
            );
            Err(StorageError::Internal("a database batch panicked"))
        }
    }
}
