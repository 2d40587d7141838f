//! The hot path's statements: transaction lookup, the known-application check, and the one
//! database transaction that stores a request (transaction record, both PRID tables, audit).
//! One bulk statement per table per request: PRIDs travel as one array parameter.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use deadpool_postgres::{Client, GenericClient};

use super::{
    StorageError,
    audit::{self, AuditEvent, AuditRecord},
};

/// A transaction recorded earlier: enough to tell a duplicate from a conflict and to re-send
/// the reply byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTransaction {
    pub body_sha256: String,
    pub reply_body: Vec<u8>,
}

/// Everything one request writes.
#[derive(Debug)]
pub struct NewTransaction<'a> {
    pub transaction_id: &'a str,
    pub app_id: &'a str,
    pub body_sha256: &'a str,
    pub received_at: NaiveDateTime,
    pub request_time: NaiveDateTime,
    /// Surviving PRIDs (unique).
    pub prids: &'a [String],
    pub reply_body: &'a [u8],
    pub lang_code: &'a str,
    pub created_by: &'a str,
}

#[derive(Debug, PartialEq)]
pub enum StoreOutcome {
    /// Committed; `newly_processed` PRIDs were not in `processed_prereg_list` before.
    Stored { newly_processed: u64 },
    /// Another delivery of the same transaction ID committed first (a concurrent duplicate):
    /// nothing was written here.
    AlreadyRecorded(StoredTransaction),
}

pub async fn find(
    client: &impl GenericClient,
    transaction_id: &str,
) -> Result<Option<StoredTransaction>, StorageError> {
    let statement = client
        .prepare_cached(
            "SELECT body_sha256, reply_body FROM prereg.sync_transaction WHERE transaction_id = $1",
        )
        .await?;
    let row = client.query_opt(&statement, &[&transaction_id]).await?;
    Ok(row.map(|row| StoredTransaction {
        body_sha256: row.get(0),
        reply_body: row.get(1),
    }))
}

/// The subset of `prids` that has an application, live or already consumed.
pub async fn known_applications(
    client: &impl GenericClient,
    prids: &[String],
) -> Result<HashSet<String>, StorageError> {
    let statement = client
        .prepare_cached(
            "SELECT prereg_id FROM prereg.applicant_demographic WHERE prereg_id = ANY($1) \
             UNION SELECT prereg_id FROM prereg.applicant_demographic_consumed WHERE prereg_id = ANY($1)",
        )
        .await?;
    let rows = client.query(&statement, &[&prids]).await?;
    Ok(rows.into_iter().map(|row| row.get(0)).collect())
}

/// Stores a request in one database transaction. The four statements are sent together
/// (pipelined on the connection; the server runs them in order). The transaction row goes
/// first: when a concurrent delivery of the same ID holds it, this insert waits for that one to
/// commit and then inserts nothing, and the transaction is rolled back, so a race becomes a
/// duplicate, never a unique violation.
pub async fn store(
    client: &mut Client,
    new: &NewTransaction<'_>,
) -> Result<StoreOutcome, StorageError> {
    let tx = client.transaction().await?;
    let (insert_transaction, insert_interface, insert_processed) = tokio::try_join!(
        tx.prepare_cached(
            "INSERT INTO prereg.sync_transaction \
             (transaction_id, app_id, body_sha256, received_at, request_time, stored_count, reply_body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (transaction_id) DO NOTHING",
        ),
        tx.prepare_cached(
            "INSERT INTO prereg.intf_processed_prereg_list (prereg_id, received_dtimes, lang_code, cr_by, cr_dtimes) \
             SELECT id, $2, $3, $4, $5 FROM unnest($1::varchar[]) AS id ON CONFLICT DO NOTHING",
        ),
        tx.prepare_cached(
            "INSERT INTO prereg.processed_prereg_list \
             (prereg_id, first_received_dtimes, status_code, status_comments, prereg_trn_id, lang_code, cr_by, cr_dtimes) \
             SELECT id, $2, 'Consumed', 'Processed by registration processor', $3, $4, $5, $6 \
             FROM unnest($1::varchar[]) AS id ON CONFLICT (prereg_id) DO NOTHING",
        ),
    )?;
    let stored_count = i32::try_from(new.prids.len()).unwrap_or(i32::MAX);
    // Sorted, so concurrent requests sharing PRIDs take row locks in the same order and
    // cannot deadlock each other.
    let mut prids: Vec<&str> = new.prids.iter().map(String::as_str).collect();
    prids.sort_unstable();
    let record = AuditRecord {
        at: new.received_at,
        app_id: new.app_id,
        transaction_id: Some(new.transaction_id),
        event: AuditEvent::Stored,
        error_code: None,
    };
    let insert_transaction = async {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &new.transaction_id,
            &new.app_id,
            &new.body_sha256,
            &new.received_at,
            &new.request_time,
            &stored_count,
            &new.reply_body,
        ];
        Ok::<_, StorageError>(tx.execute(&insert_transaction, &params).await?)
    };
    let insert_interface = async {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &prids,
            &new.request_time,
            &new.lang_code,
            &new.created_by,
            &new.received_at,
        ];
        Ok(tx.execute(&insert_interface, &params).await?)
    };
    let insert_processed = async {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &prids,
            &new.request_time,
            &new.transaction_id,
            &new.lang_code,
            &new.created_by,
            &new.received_at,
        ];
        Ok(tx.execute(&insert_processed, &params).await?)
    };
    let (inserted, _, newly_processed, ()) = tokio::try_join!(
        insert_transaction,
        insert_interface,
        insert_processed,
        audit::write(&tx, &record),
    )?;
    if inserted == 0 {
        // Another delivery recorded this transaction first: undo this one's rows.
        tx.rollback().await?;
        return match find(&*client, new.transaction_id).await? {
            Some(existing) => Ok(StoreOutcome::AlreadyRecorded(existing)),
            // The other delivery's row vanished between the two statements (retention purge):
            // let the retry policy try again from the top.
            None => Err(StorageError::Raced(
                "transaction record changed concurrently",
            )),
        };
    }
    tx.commit().await?;
    Ok(StoreOutcome::Stored { newly_processed })
}
