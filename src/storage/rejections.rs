//! Standing rejections (see `sql/0006_sync_rejection.sql`): the first verdict on a request,
//! by transaction ID and body hash, answers every later attempt of it.

use deadpool_postgres::GenericClient;

use super::{
    StorageError,
    audit::{self, AuditRecord},
};

/// Records a rejection with its audit row, in one statement: a verdict is never standing
/// without its audit row, nor the other way round. A replay judged again replaces the verdict.
pub(crate) async fn record(
    client: &impl GenericClient,
    audit: &AuditRecord<'_>,
    body_sha256: &str,
) -> Result<(), StorageError> {
    let statement = client
        .prepare_cached(&format!(
            r#"
            WITH verdict AS (
                INSERT INTO prereg.sync_rejection
                    (transaction_id, body_sha256, error_code, rejected_at)
                VALUES ($3, $8, $6, $1)
                ON CONFLICT (transaction_id, body_sha256) DO UPDATE
                    SET error_code = EXCLUDED.error_code, rejected_at = EXCLUDED.rejected_at
            )
            {}
            "#,
            audit::INSERT_ONE
        ))
        .await?;
    let (event, outcome) = (audit.event.as_str(), audit.event.outcome());
    client
        .execute(
            &statement,
            &[
                &audit.at,
                &audit.app_id,
                &audit.transaction_id,
                &event,
                &outcome,
                &audit.error_code,
                &None::<serde_json::Value>,
                &body_sha256,
            ],
        )
        .await?;
    Ok(())
}

/// The error code of the verdict standing for this request, if it was rejected.
pub(crate) async fn standing(
    client: &impl GenericClient,
    transaction_id: &str,
    body_sha256: &str,
) -> Result<Option<String>, StorageError> {
    let statement = client
        .prepare_cached(
            r#"
            SELECT error_code FROM prereg.sync_rejection
            WHERE transaction_id = $1 AND body_sha256 = $2
            "#,
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&transaction_id, &body_sha256])
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// An operator's replay: the request is judged again, so no earlier verdict stands.
pub(crate) async fn forget(
    client: &impl GenericClient,
    transaction_id: &str,
    body_sha256: &str,
) -> Result<(), StorageError> {
    let statement = client
        .prepare_cached(
            "DELETE FROM prereg.sync_rejection WHERE transaction_id = $1 AND body_sha256 = $2",
        )
        .await?;
    client
        .execute(&statement, &[&transaction_id, &body_sha256])
        .await?;
    Ok(())
}
