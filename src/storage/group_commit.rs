//! Group commit: the stores of concurrent deliveries share one database transaction.
//!
//! Why: with one PRID per request the cost is the transaction, not the rows (a `BEGIN`, four
//! statements, a `COMMIT` and its WAL flush per request). One task takes every store request
//! that is waiting, writes them all with one statement per table and commits once; each
//! delivery is answered after that commit, so nothing is acked before it is durable.
//!
//! If a shared transaction fails for the data of one request (a constraint, a deadlock), its
//! requests are stored one by one, so one request's bad data never fails its neighbours. If it
//! fails because the database is unreachable, every request gets that failure at once: storing
//! them one by one would only wait out the same outage once per request.

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{
    StorageError,
    transactions::{self, NewTransaction, StoreOutcome},
};
use crate::retry::FailureClass;

/// Requests written in one transaction at most (bounded by the deliveries in flight anyway).
const MAX_BATCH: usize = 256;

struct Job {
    new: NewTransaction,
    respond: oneshot::Sender<Result<StoreOutcome, StorageError>>,
}

/// The handle deliveries use; cloning shares the one committing task.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committing task; it ends when every handle is dropped.
    pub fn start(pool: Pool) -> GroupCommit {
        let (jobs, receiver) = mpsc::channel(MAX_BATCH);
        tokio::spawn(commit_loop(pool, receiver));
        GroupCommit { jobs }
    }

    /// Stores `new` in the next shared transaction and returns once that is committed.
    pub async fn store(&self, new: NewTransaction) -> Result<StoreOutcome, StorageError> {
        let (respond, outcome) = oneshot::channel();
        let gone = || StorageError::Unavailable("the committing task stopped".into());
        self.jobs
            .send(Job { new, respond })
            .await
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

async fn commit_loop(pool: Pool, mut receiver: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch: Vec<&NewTransaction> = jobs.iter().map(|job| &job.new).collect();
        match store(&pool, &batch).await {
            Ok(outcomes) => answer(jobs.drain(..), outcomes.into_iter().map(Ok)),
            Err(err) if jobs.len() == 1 || err.class() == FailureClass::InfrastructureDown => {
                // The first request gets the error itself, the others its description (a
                // database error cannot be cloned); both classify the same way.
                let others = StorageError::Unavailable(err.to_string());
                let shared = std::iter::once(err).chain(std::iter::repeat_with(|| {
                    StorageError::Unavailable(others.to_string())
                }));
                answer(jobs.drain(..), shared.map(Err));
            }
            Err(err) => {
                tracing::debug!(error = %err, size = jobs.len(), "shared store failed; storing one by one");
                for job in jobs.drain(..) {
                    let outcome = store(&pool, &[&job.new]).await;
                    let _ = job
                        .respond
                        .send(outcome.map(|mut outcomes| outcomes.remove(0)));
                }
            }
        }
    }
}

async fn store(pool: &Pool, batch: &[&NewTransaction]) -> Result<Vec<StoreOutcome>, StorageError> {
    let mut client = pool.get().await?;
    transactions::store_all(&mut client, batch).await
}

/// Sends each job its outcome; a delivery that stopped waiting (shutdown) is simply gone.
fn answer(
    jobs: impl Iterator<Item = Job>,
    outcomes: impl Iterator<Item = Result<StoreOutcome, StorageError>>,
) {
    for (job, outcome) in jobs.zip(outcomes) {
        let _ = job.respond.send(outcome);
    }
}
