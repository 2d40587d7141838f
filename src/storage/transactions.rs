//! The hot path's statements: transaction lookup, the known-application check, and the one
//! database transaction that stores requests (its rows are written by `rows`). One bulk
//! statement per table however many requests and PRIDs, so a transaction costs the same few
//! round trips for one PRID or thousands.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicBool, Ordering},
};

use deadpool_postgres::{Client, GenericClient, Pool};
use tokio_postgres::{error::SqlState, types::Type};

use super::{
    StorageError,
    batching::{Answer, BatchHandler},
    model::{NewTransaction, StoreOutcome, StoredTransaction},
    rows::{self, Method},
};
use crate::retry::FailureClass;

// The two reads below are planned at every execution (`query_typed`: the unnamed statement,
// parse, bind and execute in one round trip), never from a cached generic plan. A plan cached
// on a connection that first ran while the table was empty is a sequential scan, kept until
// the next ANALYZE: a worker started on a fresh database scanned the whole transaction table
// for every lookup (seen in the benchmark). Planning a primary-key lookup costs less than one
// such scan, once per batch.

/// The recorded transactions among `ids`, by ID.
async fn find_all(
    client: &tokio_postgres::Client,
    ids: &[&str],
) -> Result<HashMap<String, StoredTransaction>, StorageError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query_typed(
            r#"
            SELECT transaction_id, body_sha256, reply_body FROM prereg.sync_transaction
            WHERE transaction_id = ANY($1)
            "#,
            &[(&ids, Type::VARCHAR_ARRAY)],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let recorded = StoredTransaction {
                body_sha256: row.get(1),
                reply_body: row.get(2),
            };
            (row.get(0), recorded)
        })
        .collect())
}

/// The subset of `prids` that has an application, live or already consumed. `UNION ALL`: the
/// set removes a PRID found in both tables, so the server need not.
async fn known_applications(
    client: &tokio_postgres::Client,
    prids: &[&str],
) -> Result<HashSet<String>, StorageError> {
    if prids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = client
        .query_typed(
            r#"
            SELECT prereg_id FROM prereg.applicant_demographic WHERE prereg_id = ANY($1)
            UNION ALL
            SELECT prereg_id FROM prereg.applicant_demographic_consumed WHERE prereg_id = ANY($1)
            "#,
            &[(&prids, Type::VARCHAR_ARRAY)],
        )
        .await?;
    Ok(rows.into_iter().map(|row| row.get(0)).collect())
}

/// The reads that decide a request before anything is written (contract rules 1 and 3).
#[derive(Debug)]
pub(crate) struct Lookup {
    /// Only when the `message_id` is a valid transaction ID (otherwise nothing is recorded
    /// under it to find).
    pub(crate) transaction_id: Option<String>,
    /// Well-formed PRIDs to check against the applications, when that check is on.
    pub(crate) prids: Option<Vec<String>>,
}

#[derive(Debug)]
pub(crate) struct LookedUp {
    pub(crate) existing: Option<StoredTransaction>,
    /// Which of the lookup's PRIDs have an application (`None`: not checked).
    pub(crate) known: Option<HashSet<String>>,
}

/// Batch handler for lookups: all waiting requests' transaction lookups in one query and their
/// known-application checks in another, both pipelined on one connection.
pub(crate) struct Lookups(pub(crate) Pool);

impl BatchHandler for Lookups {
    type Input = Lookup;
    type Output = LookedUp;

    async fn handle(&self, lookups: &[Lookup]) -> Result<Vec<Answer<Self>>, StorageError> {
        let client = self.0.get().await?;
        let ids: Vec<&str> = lookups
            .iter()
            .filter_map(|lookup| lookup.transaction_id.as_deref())
            .collect();
        let prids: Vec<&str> = lookups
            .iter()
            .flat_map(|lookup| lookup.prids.iter().flatten())
            .map(String::as_str)
            .collect();
        let (recorded, known) =
            tokio::try_join!(find_all(&client, &ids), known_applications(&client, &prids))?;
        Ok(lookups
            .iter()
            .map(|lookup| {
                Ok(LookedUp {
                    existing: lookup
                        .transaction_id
                        .as_ref()
                        .and_then(|id| recorded.get(id).cloned()),
                    known: lookup.prids.as_ref().map(|prids| {
                        prids
                            .iter()
                            .filter(|prid| known.contains(*prid))
                            .cloned()
                            .collect()
                    }),
                })
            })
            .collect())
    }
}

/// Batch handler for stores: group commit, all waiting requests in one transaction.
pub(crate) struct Stores {
    pool: Pool,
    /// Set once the database refused `COPY` (a table under row-level security): every later
    /// batch goes straight to the statements, instead of failing a `COPY` each time.
    copy_refused: AtomicBool,
}

impl Stores {
    pub(crate) fn new(pool: Pool) -> Stores {
        Stores {
            pool,
            copy_refused: AtomicBool::new(false),
        }
    }
}

impl BatchHandler for Stores {
    type Input = NewTransaction;
    type Output = StoreOutcome;

    async fn handle(&self, batch: &[NewTransaction]) -> Result<Vec<Answer<Self>>, StorageError> {
        #[cfg(feature = "fault-injection")]
        crate::fault::maybe_panic(
            batch
                .iter()
                .map(|transaction| transaction.transaction_id.as_str()),
        );
        let mut client = self.pool.get().await?;
        if self.copy_refused.load(Ordering::Relaxed) {
            let committed = commit(&mut client, batch, Method::Insert).await?;
            return answer_all(&client, batch, committed).await;
        }
        store_all(&self.pool, client, batch, &self.copy_refused).await
    }
}

/// Stores `batch` in one database transaction and answers each, in order, once it is committed.
/// After the commit every stored request's answer is final: a failure to read back a duplicate's
/// record (its row purged in between, the connection lost) fails that duplicate alone, to be
/// retried from the top, never its committed neighbours.
///
/// Transaction rows go first, in ID order: when a concurrent delivery of the same ID holds its
/// row, the insert waits for that one to commit; sorted, two writers lock rows in the same
/// order and cannot deadlock. A transaction ID already recorded, or repeated within `batch`,
/// writes nothing and is answered with the recorded transaction.
///
/// The first attempt expects every row to be new, as it almost always is (a redelivery or a
/// duplicate publish was recognised by the lookup): plain `INSERT`s for the transaction rows and
/// `COPY` for the PRID rows, neither of which can skip a row already there. A batch with such a
/// row (a concurrent duplicate that committed first, a PRID stored under another transaction ID)
/// is rolled back and written again with `INSERT … ON CONFLICT DO NOTHING` (see `rows`). Both
/// commit the same rows and give the same answers.
async fn store_all(
    pool: &Pool,
    mut client: Client,
    batch: &[NewTransaction],
    copy_refused: &AtomicBool,
) -> Result<Vec<Answer<Stores>>, StorageError> {
    // Every row new first; a transaction or PRID row already there ends that attempt with a
    // unique violation (nothing else in it can raise one), and the batch is written again by the
    // statements that skip such rows. So is a table COPY cannot write (row-level security:
    // 0A000) in a database customised beyond the contract's schema; that one is remembered.
    let committed = match commit(&mut client, batch, Method::Copy).await {
        Err(StorageError::Db(err))
            if err.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) =>
        {
            if err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
                copy_refused.store(true, Ordering::Relaxed);
            }
            tracing::debug!(
                size = batch.len(),
                "a row of the batch is stored already (a PRID, or a concurrent duplicate's transaction), or COPY was refused; writing the batch again with the statements that skip such rows"
            );
            // A COPY that failed part-way can leave its connection out of step with the server
            // (the pipelined statements' answers arrive late): the retry takes a fresh one, and
            // this one is closed rather than pooled.
            drop(deadpool_postgres::Object::take(client));
            client = pool.get().await?;
            commit(&mut client, batch, Method::Insert).await?
        }
        committed => committed?,
    };
    answer_all(&client, batch, committed).await
}

/// The answers of a committed batch: each request that wrote its transaction row is stored;
/// the others are answered with the transaction recorded first.
async fn answer_all(
    client: &Client,
    batch: &[NewTransaction],
    (inserted, newly_processed): (HashSet<String>, HashMap<String, u64>),
) -> Result<Vec<Answer<Stores>>, StorageError> {
    // Requests that wrote nothing: answered with the row that was there first.
    let mut answered = HashSet::with_capacity(batch.len());
    let first_answers: Vec<bool> = batch
        .iter()
        .map(|transaction| {
            let id = transaction.transaction_id.as_str();
            inserted.contains(id) && answered.insert(id)
        })
        .collect();
    let duplicate_ids: Vec<&str> = batch
        .iter()
        .zip(&first_answers)
        .filter(|(_, first)| !**first)
        .map(|(transaction, _)| transaction.transaction_id.as_str())
        .collect();
    let recorded = find_all(client, &duplicate_ids)
        .await
        .map_err(|err| (err.class(), err.to_string()));
    Ok(batch
        .iter()
        .zip(first_answers)
        .map(|(transaction, first)| {
            let id = transaction.transaction_id.as_str();
            if first {
                let newly_processed = newly_processed.get(id).copied().unwrap_or(0);
                return Ok(StoreOutcome::Stored { newly_processed });
            }
            match &recorded {
                Ok(recorded) => match recorded.get(id) {
                    Some(existing) => Ok(StoreOutcome::AlreadyRecorded(existing.clone())),
                    // The other delivery's row vanished in between (retention purge): let the
                    // retry policy try again from the top.
                    None => Err(StorageError::Raced(
                        "transaction record changed concurrently",
                    )),
                },
                Err((FailureClass::InfrastructureDown, why)) => {
                    Err(StorageError::Unavailable(why.clone()))
                }
                Err(_) => Err(StorageError::Raced(
                    "the recorded transaction could not be read back",
                )),
            }
        })
        .collect())
}

/// One attempt at the transaction of [`store_all`]: the IDs whose transaction rows it inserted
/// and, per ID, how many of its PRIDs were new. Rolled back when it fails.
async fn commit(
    client: &mut Client,
    batch: &[NewTransaction],
    method: Method,
) -> Result<(HashSet<String>, HashMap<String, u64>), StorageError> {
    let tx = client.transaction().await?;
    let mut seen = HashSet::with_capacity(batch.len());
    let mut firsts: Vec<&NewTransaction> = batch
        .iter()
        .filter(|transaction| seen.insert(transaction.transaction_id.as_str()))
        .collect();
    firsts.sort_unstable_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
    let inserted = rows::insert_transactions(&tx, &firsts, method).await?;
    let stored: Vec<&NewTransaction> = firsts
        .into_iter()
        .filter(|transaction| inserted.contains(transaction.transaction_id.as_str()))
        .collect();
    let newly_processed = rows::write(&tx, &stored, method).await?;
    tx.commit().await?;
    Ok((inserted, newly_processed))
}
