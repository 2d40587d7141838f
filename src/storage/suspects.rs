//! Attempts of redelivered requests tried in isolation (see `sql/0003_sync_suspect.sql`).

use std::collections::HashMap;

use chrono::Utc;
use deadpool_postgres::GenericClient;

use super::StorageError;

/// Recorded isolated attempts of each of `transaction_ids` (absent: never tried alone).
pub(crate) async fn attempts(
    client: &impl GenericClient,
    transaction_ids: &[&str],
) -> Result<HashMap<String, i32>, StorageError> {
    let statement = client
        .prepare_cached(
            "SELECT transaction_id, attempts FROM prereg.sync_suspect WHERE transaction_id = ANY($1)",
        )
        .await?;
    let rows = client.query(&statement, &[&transaction_ids]).await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Records, durably, that `transaction_id` is about to be tried alone.
pub(crate) async fn mark_attempt(
    client: &impl GenericClient,
    transaction_id: &str,
) -> Result<(), StorageError> {
    let statement = client
        .prepare_cached(
            r#"
            INSERT INTO prereg.sync_suspect (transaction_id, attempts, last_attempt_at)
            VALUES ($1, 1, $2)
            ON CONFLICT (transaction_id) DO UPDATE
            SET attempts = sync_suspect.attempts + 1, last_attempt_at = EXCLUDED.last_attempt_at
            "#,
        )
        .await?;
    client
        .execute(&statement, &[&transaction_id, &Utc::now().naive_utc()])
        .await?;
    Ok(())
}

/// The attempt finished without killing the worker: it is no longer a suspect.
pub(crate) async fn clear(
    client: &impl GenericClient,
    transaction_id: &str,
) -> Result<(), StorageError> {
    let statement = client
        .prepare_cached("DELETE FROM prereg.sync_suspect WHERE transaction_id = $1")
        .await?;
    client.execute(&statement, &[&transaction_id]).await?;
    Ok(())
}
