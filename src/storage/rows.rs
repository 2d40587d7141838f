//! The rows a group commit writes: the transaction records, and for the transactions it
//! stores one row per PRID in `processed_prereg_list`, one per receipt in
//! `intf_processed_prereg_list` and one audit row each.
//!
//! Two ways to write the same rows. [`Method::Copy`] sends the PRID rows with binary `COPY`,
//! which PostgreSQL inserts in bulk: about a third less database CPU per PRID than the
//! `INSERT … ON CONFLICT DO NOTHING` of [`Method::Insert`] (a WAL record per heap page instead
//! of two per row, no speculative insertion; measured in docs/performance-log.md, 2026-11-29).
//! COPY cannot skip a row that is already there, so it is the first attempt only: PRIDs are
//! normally new, since a redelivery or a duplicate publish is recognised by its transaction ID
//! before any PRID row is written. A PRID stored earlier under another transaction ID, or by
//! another replica at the same moment, fails the COPY with a unique violation; the caller then
//! rolls back and writes the batch again with `Insert`, which keeps the rows already there. The
//! transaction rows follow the same rule: a plain `INSERT` with `Copy` (half the database time
//! per row of the `ON CONFLICT` one, docs/performance-log.md, 2026-11-29), the skipping one
//! with `Insert`.

mod binary_copy;

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;

use super::{
    StorageError,
    audit::{self, AuditEvent, AuditRecord},
    model::NewTransaction,
};
use binary_copy::{
    CopyData,
    Field::{Text, Timestamp},
};

/// `status_code` of a stored PRID.
const STATUS_CODE: &str = "Consumed";
/// `status_comments` of a stored PRID: pending for the consumed-status job, which finds such
/// rows through the partial index `idx_prcpl_pending_cr_dtimes` (its predicate names this
/// literal).
const PENDING: &str = "Processed by registration processor";

/// How a group commit's rows are written (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// The first attempt: every row must be new (PRID rows by `COPY`, transaction rows by a
    /// plain `INSERT`); one that is not fails it with a unique violation.
    Copy,
    /// The fallback: `INSERT … ON CONFLICT DO NOTHING`, keeping the rows already there.
    Insert,
}

/// Inserts the transaction rows; returns the IDs actually inserted (not recorded before).
///
/// With [`Method::Copy`] every row must be new, like the PRID rows: a plain `INSERT` skips the
/// speculative insertion that `ON CONFLICT` pays per row (an extra index probe and WAL record),
/// and a transaction ID recorded meanwhile fails the attempt with a unique violation, after
/// which the batch is written again with [`Method::Insert`], which skips it.
pub(super) async fn insert_transactions(
    tx: &Transaction<'_>,
    news: &[&NewTransaction],
    method: Method,
) -> Result<HashSet<String>, StorageError> {
    const INSERT: &str = r#"
        INSERT INTO prereg.sync_transaction
            (transaction_id, app_id, body_sha256, received_at, request_time, stored_count, reply_body)
        SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::text[], $4::timestamp[],
                             $5::timestamp[], $6::int[], $7::bytea[])
    "#;
    let statement = match method {
        Method::Copy => tx.prepare_cached(INSERT).await?,
        Method::Insert => {
            tx.prepare_cached(&format!(
                "{INSERT} ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id"
            ))
            .await?
        }
    };
    let ids: Vec<&str> = news.iter().map(|n| n.transaction_id.as_str()).collect();
    let apps: Vec<&str> = news.iter().map(|n| n.app_id.as_str()).collect();
    let hashes: Vec<&str> = news.iter().map(|n| n.body_sha256.as_str()).collect();
    let received: Vec<NaiveDateTime> = news.iter().map(|n| n.received_at).collect();
    let requested: Vec<NaiveDateTime> = news.iter().map(|n| n.request_time).collect();
    let counts: Vec<i32> = news
        .iter()
        .map(|n| i32::try_from(n.prids.len()).unwrap_or(i32::MAX))
        .collect();
    let replies: Vec<&[u8]> = news.iter().map(|n| n.reply_body.as_slice()).collect();
    let params: [&(dyn ToSql + Sync); 7] = [
        &ids, &apps, &hashes, &received, &requested, &counts, &replies,
    ];
    match method {
        Method::Copy => {
            tx.execute(&statement, &params).await?;
            Ok(ids.into_iter().map(str::to_owned).collect())
        }
        Method::Insert => {
            let rows = tx.query(&statement, &params).await?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        }
    }
}

/// Writes the PRID rows and the audit rows of the stored transactions; returns per transaction
/// ID how many of its PRIDs were new in `processed_prereg_list`.
pub(super) async fn write(
    tx: &Transaction<'_>,
    stored: &[&NewTransaction],
    method: Method,
) -> Result<HashMap<String, u64>, StorageError> {
    let Some(first) = stored.first() else {
        return Ok(HashMap::new());
    };
    // One row per PRID, sorted so concurrent writers take row locks in the same order. A PRID
    // in several of these requests: the earliest request time comes first and is kept
    // (`first_received_dtimes` is when the PRID was first reported).
    let mut rows: Vec<(&str, &NewTransaction)> = stored
        .iter()
        .flat_map(|new| new.prids.iter().map(move |prid| (prid.as_str(), *new)))
        .collect();
    rows.sort_unstable_by(|a, b| {
        (a.0, a.1.request_time, &a.1.transaction_id).cmp(&(
            b.0,
            b.1.request_time,
            &b.1.transaction_id,
        ))
    });
    // Every request of a worker carries the same configured values.
    let (lang, by) = (first.lang_code.as_str(), first.created_by.as_str());
    let records: Vec<AuditRecord> = stored
        .iter()
        .map(|new| AuditRecord {
            at: new.received_at,
            app_id: &new.app_id,
            transaction_id: Some(&new.transaction_id),
            event: AuditEvent::Stored,
            error_code: None,
        })
        .collect();
    match method {
        Method::Copy => copy(tx, &rows, lang, by, &records).await,
        Method::Insert => insert(tx, &rows, lang, by, &records).await,
    }
}

/// `rows` (sorted) with `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`, the audit
/// rows pipelined with them.
async fn insert(
    tx: &Transaction<'_>,
    rows: &[(&str, &NewTransaction)],
    lang: &str,
    by: &str,
    records: &[AuditRecord<'_>],
) -> Result<HashMap<String, u64>, StorageError> {
    let prids: Vec<&str> = rows.iter().map(|(prid, _)| *prid).collect();
    let request_times: Vec<NaiveDateTime> = rows.iter().map(|(_, new)| new.request_time).collect();
    let received: Vec<NaiveDateTime> = rows.iter().map(|(_, new)| new.received_at).collect();
    let owners: Vec<&str> = rows
        .iter()
        .map(|(_, new)| new.transaction_id.as_str())
        .collect();
    let (interface, processed) = tokio::try_join!(
        tx.prepare_cached(
            r#"
            INSERT INTO prereg.intf_processed_prereg_list
                (prereg_id, received_dtimes, lang_code, cr_by, cr_dtimes)
            SELECT id, rt, $3, $4, ca
            FROM unnest($1::varchar[], $2::timestamp[], $5::timestamp[]) AS t(id, rt, ca)
            ON CONFLICT DO NOTHING
            "#,
        ),
        tx.prepare_cached(
            r#"
            INSERT INTO prereg.processed_prereg_list
                (prereg_id, first_received_dtimes, status_code, status_comments, prereg_trn_id,
                 lang_code, cr_by, cr_dtimes)
            SELECT id, rt, $7, $8, trn, $4, $5, ca
            FROM unnest($1::varchar[], $2::timestamp[], $3::varchar[], $6::timestamp[])
                AS t(id, rt, trn, ca)
            ON CONFLICT (prereg_id) DO NOTHING RETURNING prereg_trn_id
            "#,
        ),
    )?;
    let interface_rows = async {
        let params: [&(dyn ToSql + Sync); 5] = [&prids, &request_times, &lang, &by, &received];
        Ok::<_, StorageError>(tx.execute(&interface, &params).await?)
    };
    let processed_rows = async {
        let params: [&(dyn ToSql + Sync); 8] = [
            &prids,
            &request_times,
            &owners,
            &lang,
            &by,
            &received,
            &STATUS_CODE,
            &PENDING,
        ];
        Ok(tx.query(&processed, &params).await?)
    };
    // In order (`biased`), so the error reported is the first statement's to fail: the ones sent
    // after it fail only because the transaction is aborted (25P02, which would classify as
    // transient), and their answers arrive after its own.
    let (_, new_rows, ()) = tokio::try_join!(
        biased;
        interface_rows,
        processed_rows,
        audit::write_all(tx, records)
    )?;
    let mut newly: HashMap<String, u64> = HashMap::new();
    for row in new_rows {
        *newly.entry(row.get::<_, String>(0)).or_default() += 1;
    }
    Ok(newly)
}

/// `rows` (sorted) with binary `COPY`, each table's rows once as `insert` would keep them: the
/// first of each (PRID, request time) in the interface table, the first of each PRID in
/// `processed_prereg_list`. Fails with a unique violation if any of them is already there.
async fn copy(
    tx: &Transaction<'_>,
    rows: &[(&str, &NewTransaction)],
    lang: &str,
    by: &str,
    records: &[AuditRecord<'_>],
) -> Result<HashMap<String, u64>, StorageError> {
    // The audit rows travel with the preparation; a COPY holds the connection until it ends.
    let (interface, processed, ()) = tokio::try_join!(
        async {
            Ok::<_, StorageError>(
                tx.prepare_cached(
                    r#"
                    COPY prereg.intf_processed_prereg_list
                        (prereg_id, received_dtimes, lang_code, cr_by, cr_dtimes)
                    FROM STDIN (FORMAT binary)
                    "#,
                )
                .await?,
            )
        },
        async {
            Ok(tx
                .prepare_cached(
                    r#"
                    COPY prereg.processed_prereg_list
                        (prereg_id, first_received_dtimes, status_code, status_comments,
                         prereg_trn_id, lang_code, cr_by, cr_dtimes)
                    FROM STDIN (FORMAT binary)
                    "#,
                )
                .await?)
        },
        audit::write_all(tx, records),
    )?;
    // The same table order as `insert`: an older worker next to this one locks in that order.
    let mut receipts = CopyData::new();
    for group in rows.chunk_by(|a, b| a.0 == b.0 && a.1.request_time == b.1.request_time) {
        let (prid, new) = group[0];
        receipts.row(&[
            Text(prid),
            Timestamp(new.request_time),
            Text(lang),
            Text(by),
            Timestamp(new.received_at),
        ]);
    }
    receipts.send(tx, &interface).await?;
    let mut firsts = CopyData::new();
    let mut newly: HashMap<String, u64> = HashMap::new();
    for group in rows.chunk_by(|a, b| a.0 == b.0) {
        let (prid, new) = group[0];
        firsts.row(&[
            Text(prid),
            Timestamp(new.request_time),
            Text(STATUS_CODE),
            Text(PENDING),
            Text(&new.transaction_id),
            Text(lang),
            Text(by),
            Timestamp(new.received_at),
        ]);
        *newly.entry(new.transaction_id.clone()).or_default() += 1;
    }
    firsts.send(tx, &processed).await?;
    Ok(newly)
}

#[cfg(test)]
mod tests;
