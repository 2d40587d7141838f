//! The statements of one chunk: claim pending PRIDs, find their applications, move those to
//! the `*_consumed` tables, and mark the processed rows.

use chrono::{NaiveDateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::Timestamp;

use crate::storage::StorageError;

const CONSUMED: &str = "Application consumed";
const NOT_FOUND: &str = "Application not found";

/// One pending PRID with the transaction that reported it (the only thing logs may show).
pub(super) struct Pending {
    pub(super) prereg_id: String,
    pub(super) transaction_id: String,
    /// `cr_dtimes`: when it was stored, the first half of the job's order.
    stored_at: NaiveDateTime,
}

/// Where the next chunk starts: after this (storage time, PRID), the key of the partial index
/// `idx_prcpl_pending_cr_dtimes`, so the oldest pending rows are moved first and a chunk never
/// rescans rows already handled (their dead index entries stay until vacuum).
pub(super) struct Cursor(Timestamp<NaiveDateTime>, String);

impl Cursor {
    /// Before every row.
    pub(super) fn start() -> Cursor {
        Cursor(Timestamp::NegInfinity, String::new())
    }

    /// Right after `last`.
    pub(super) fn after(last: &Pending) -> Cursor {
        Cursor(Timestamp::Value(last.stored_at), last.prereg_id.clone())
    }
}

pub(super) fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Claims up to `limit` pending rows no other transaction holds, skipping those that already
/// failed in this run (they stay pending for the next run): only rows after `after`.
pub(super) async fn claim_chunk(
    tx: &Transaction<'_>,
    limit: i64,
    after: &Cursor,
) -> Result<Vec<Pending>, StorageError> {
    let statement = tx
        .prepare_cached(
            // The status is a literal, not a parameter, so even a generic plan of this
            // prepared statement matches the partial index idx_prcpl_pending_cr_dtimes.
            r#"
            SELECT prereg_id, coalesce(prereg_trn_id, ''), cr_dtimes
            FROM prereg.processed_prereg_list
            WHERE status_comments = 'Processed by registration processor'
            AND (cr_dtimes, prereg_id) > ($1, $2)
            ORDER BY cr_dtimes, prereg_id LIMIT $3 FOR UPDATE SKIP LOCKED
            "#,
        )
        .await?;
    let rows = tx.query(&statement, &[&after.0, &after.1, &limit]).await?;
    Ok(rows
        .into_iter()
        .map(|row| Pending {
            prereg_id: row.get(0),
            transaction_id: row.get(1),
            stored_at: row.get(2),
        })
        .collect())
}

/// The PRIDs among `ids` whose application (demographic row) exists, locked for the move.
pub(super) async fn existing_applications(
    tx: &Transaction<'_>,
    ids: &[&str],
) -> Result<Vec<String>, StorageError> {
    let statement = tx
        .prepare_cached(
            r#"
            SELECT prereg_id FROM prereg.applicant_demographic WHERE prereg_id = ANY($1)
            ORDER BY prereg_id FOR UPDATE
            "#,
        )
        .await?;
    let rows = tx.query(&statement, &[&ids]).await?;
    Ok(rows.into_iter().map(|row| row.get(0)).collect())
}

/// Marks the processed rows of `ids` as having no application.
pub(super) async fn mark_not_found(tx: &Transaction<'_>, ids: &[&str]) -> Result<(), StorageError> {
    mark(tx, ids, NOT_FOUND).await
}

/// Copies the applications of `ids` to the `_consumed` tables, deletes the originals and
/// marks the processed rows consumed, `upd_by` = `app_id`: all or nothing (the caller's
/// savepoint).
pub(super) async fn archive(
    tx: &Transaction<'_>,
    ids: &[&str],
    app_id: &str,
) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = now();
    exec(
        tx,
        r#"
        INSERT INTO prereg.applicant_demographic_consumed (prereg_id, demog_detail, demog_detail_hash,
        encrypted_dtimes, status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes, upd_by, upd_dtimes)
        SELECT prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, 'Consumed', lang_code,
        cr_appuser_id, cr_by, cr_dtimes, $2, $3 FROM prereg.applicant_demographic WHERE prereg_id = ANY($1)
        "#,
        &[&ids, &app_id, &now],
    )
    .await?;
    exec(
        tx,
        r#"
        INSERT INTO prereg.applicant_document_consumed (id, prereg_id, doc_name, doc_cat_code, doc_typ_code,
        doc_file_format, doc_id, doc_hash, doc_ref_id, encrypted_dtimes, status_code, lang_code, cr_by,
        cr_dtimes, upd_by, upd_dtimes)
        SELECT id, prereg_id, doc_name, doc_cat_code, doc_typ_code, doc_file_format, doc_id, doc_hash,
        doc_ref_id, encrypted_dtimes, status_code, lang_code, cr_by, cr_dtimes, upd_by, upd_dtimes
        FROM prereg.applicant_document WHERE prereg_id = ANY($1)
        "#,
        &[&ids],
    )
    .await?;
    exec(
        tx,
        r#"
        INSERT INTO prereg.reg_appointment_consumed (id, regcntr_id, prereg_id, booking_dtimes,
        appointment_date, slot_from_time, slot_to_time, lang_code, cr_by, cr_dtimes, upd_by, upd_dtimes)
        SELECT id, regcntr_id, prereg_id, booking_dtimes, appointment_date, slot_from_time, slot_to_time,
        lang_code, cr_by, cr_dtimes, upd_by, upd_dtimes FROM prereg.reg_appointment WHERE prereg_id = ANY($1)
        "#,
        &[&ids],
    )
    .await?;
    for delete in [
        "DELETE FROM prereg.applicant_document WHERE prereg_id = ANY($1)",
        "DELETE FROM prereg.reg_appointment WHERE prereg_id = ANY($1)",
        "DELETE FROM prereg.applicant_demographic WHERE prereg_id = ANY($1)",
        "DELETE FROM prereg.applications WHERE application_id = ANY($1)",
    ] {
        exec(tx, delete, &[&ids]).await?;
    }
    mark(tx, ids, CONSUMED).await
}

async fn mark(tx: &Transaction<'_>, ids: &[&str], comment: &str) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "UPDATE prereg.processed_prereg_list SET status_comments = $2, upd_dtimes = $3 WHERE prereg_id = ANY($1)",
        )
        .await?;
    tx.execute(&statement, &[&ids, &comment, &now()]).await?;
    Ok(())
}

async fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), StorageError> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await?;
    Ok(())
}
