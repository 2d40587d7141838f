//! Retention: `prereg-sync maintenance purge-*` delete old rows in batches, so no single
//! statement holds locks or bloats WAL for long.

use anyhow::Context;
use chrono::Utc;
use deadpool_postgres::Pool;

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// The youngest cutoff a purge accepts: a day keeps every row the worker may still need (a
/// request held through the retry tiers and an outage, today's audit trail).
pub(crate) const MIN_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A table with a retention command, and the timestamp column its age is measured by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purge {
    /// `intf_processed_prereg_list` by `cr_dtimes` (operators may truncate it at any time).
    Interface,
    /// `sync_transaction` by `received_at`: older duplicates are then processed as new; and
    /// `sync_rejection` by `rejected_at`: older rejected requests are then judged anew.
    Transactions,
    /// `sync_audit` by `event_time`.
    Audit,
}

impl Purge {
    /// The table named in the command's output.
    pub(crate) fn table(self) -> &'static str {
        self.tables_and_columns()[0].0
    }

    fn tables_and_columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Purge::Interface => &[("prereg.intf_processed_prereg_list", "cr_dtimes")],
            Purge::Transactions => &[
                ("prereg.sync_transaction", "received_at"),
                ("prereg.sync_rejection", "rejected_at"),
            ],
            Purge::Audit => &[("prereg.sync_audit", "event_time")],
        }
    }
}

fn cutoff(older_than: std::time::Duration) -> anyhow::Result<chrono::NaiveDateTime> {
    Ok(Utc::now().naive_utc()
        - chrono::Duration::from_std(older_than).context("--older-than is too large")?)
}

/// Deletes rows older than `older_than`, `BATCH` at a time, and returns how many went; with
/// `dry_run`, counts the rows it would delete and deletes nothing.
pub(crate) async fn purge(
    pool: &Pool,
    what: Purge,
    older_than: std::time::Duration,
    dry_run: bool,
) -> anyhow::Result<u64> {
    let cutoff = cutoff(older_than)?;
    let client = pool.get().await.context("connecting to the database")?;
    let mut total = 0;
    for (table, column) in what.tables_and_columns() {
        total += purge_table(&client, table, column, cutoff, dry_run).await?;
    }
    Ok(total)
}

async fn purge_table(
    client: &deadpool_postgres::Client,
    table: &str,
    column: &str,
    cutoff: chrono::NaiveDateTime,
    dry_run: bool,
) -> anyhow::Result<u64> {
    if dry_run {
        let rows: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} < $1"),
                &[&cutoff],
            )
            .await
            .with_context(|| format!("counting {table}"))?
            .get(0);
        return Ok(rows.unsigned_abs());
    }
    let sql = format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2))"
    );
    let statement = client.prepare(&sql).await.context("preparing the purge")?;
    let mut total = 0;
    loop {
        let deleted = client
            .execute(&statement, &[&cutoff, &BATCH])
            .await
            .with_context(|| format!("purging {table}"))?;
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
