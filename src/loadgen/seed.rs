//! The fake applications `loadgen --seed-fake-applications` inserts into the live
//! `applicant_demographic` table (marked `cr_by = 'loadgen'`), their removal
//! (`loadgen cleanup`), and the guard that keeps both off a database that does not look like a
//! test one.

use anyhow::Context;

use crate::{config::Settings, storage};

/// Applications are seeded this many rows per statement.
const SEED_CHUNK: usize = 10_000;
/// The `cr_by` of every row loadgen inserts: what `cleanup` deletes by.
const SEEDED_BY: &str = "loadgen";
/// Words in a database name that say it is not production.
const TEST_NAME_WORDS: [&str; 5] = ["test", "dev", "demo", "bench", "loadgen"];

/// Why loadgen must not write to the database `name`: its name holds none of
/// [`TEST_NAME_WORDS`] and `allowed` does not repeat it. Fake applications in a production
/// table are taken for real ones.
pub(crate) fn database_refusal(name: &str, allowed: Option<&str>) -> Option<String> {
    let lower = name.to_lowercase();
    let test_like = TEST_NAME_WORDS.iter().any(|word| lower.contains(word));
    (!test_like && allowed != Some(name)).then(|| {
        format!(
            "database `{name}` does not look like a test database (its name holds none of {}): \
             loadgen would write fake applications into its live tables. If it is one, add \
             --allow-database {name}",
            TEST_NAME_WORDS.join(", ")
        )
    })
}

/// Inserts an `applicant_demographic` row per PRID so the known-application check passes.
pub async fn seed_applications(settings: &Settings, prids: &[String]) -> anyhow::Result<()> {
    let database = storage::Database::new(&settings.database)?;
    let (client, driver) = database
        .connect(None)
        .await
        .context("connecting to the database")?;
    let statement = client
        .prepare(
            r#"
            INSERT INTO prereg.applicant_demographic
            (prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes)
            SELECT id, '\x00'::bytea, 'loadgen', now(), 'Booked', 'eng', $2, $2, now()
            FROM unnest($1::varchar[]) AS id ON CONFLICT DO NOTHING
            "#,
        )
        .await
        .context("preparing the seed statement")?;
    for chunk in prids.chunks(SEED_CHUNK) {
        client
            .execute(&statement, &[&chunk, &SEEDED_BY])
            .await
            .context("seeding applications")?;
    }
    // Vacuumed and analysed now, so autovacuum does not process the freshly seeded table in the
    // middle of a measurement (it did, in the benchmark's larger scenarios). A role that does
    // not own the table gets a warning from PostgreSQL, not an error.
    client
        .batch_execute("VACUUM ANALYZE prereg.applicant_demographic")
        .await
        .context("analysing the seeded applications")?;
    storage::migrate::close_session(client, driver).await;
    Ok(())
}

/// Deletes the applications loadgen seeded, from the live table and from the one the
/// consumed-status job moves them to; returns how many went from each.
pub(crate) async fn remove_seeded_applications(settings: &Settings) -> anyhow::Result<(u64, u64)> {
    let database = storage::Database::new(&settings.database)?;
    let (mut client, driver) = database
        .connect(None)
        .await
        .context("connecting to the database")?;
    let tx = client.transaction().await.context("starting the cleanup")?;
    let mut deleted = [0; 2];
    for (count, table) in deleted
        .iter_mut()
        .zip(["applicant_demographic", "applicant_demographic_consumed"])
    {
        *count = tx
            .execute(
                &format!("DELETE FROM prereg.{table} WHERE cr_by = $1"),
                &[&SEEDED_BY],
            )
            .await
            .with_context(|| format!("deleting the seeded rows of {table}"))?;
    }
    tx.commit().await.context("committing the cleanup")?;
    storage::migrate::close_session(client, driver).await;
    Ok((deleted[0], deleted[1]))
}
