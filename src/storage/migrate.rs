//! Database creation and migrations.
//!
//! Migrations are the files in `sql/`, embedded at build time so the binary and its schema can
//! never disagree. All pending ones run in one transaction under a transaction-level advisory
//! lock: replicas starting together serialise here, and a pooled connection cannot keep the lock
//! by accident (a session lock would survive connection recycling).

use anyhow::Context;
use tokio_postgres::error::SqlState;

use super::Database;

/// (version, name, SQL), in order. Add new files at the end; never edit an applied one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "mosip_tables",
        include_str!("../../sql/0001_mosip_tables.sql"),
    ),
    (
        2,
        "prereg_sync_tables",
        include_str!("../../sql/0002_prereg_sync_tables.sql"),
    ),
    (
        3,
        "sync_suspect",
        include_str!("../../sql/0003_sync_suspect.sql"),
    ),
    (
        4,
        "consumed_job",
        include_str!("../../sql/0004_consumed_job.sql"),
    ),
    (
        5,
        "pending_in_storage_order",
        include_str!("../../sql/0005_pending_in_storage_order.sql"),
    ),
    (
        6,
        "sync_rejection",
        include_str!("../../sql/0006_sync_rejection.sql"),
    ),
    (
        7,
        "sync_audit_detail",
        include_str!("../../sql/0007_sync_audit_detail.sql"),
    ),
];

/// Arbitrary constant naming "prereg-sync migrations" among advisory locks.
const MIGRATION_LOCK: i64 = 0x7072_6573_796e_6301;

/// Creates the configured database when it does not exist and the role may create it.
pub(crate) async fn create_database_if_missing(database: &Database) -> anyhow::Result<()> {
    let name = database.name().to_owned();
    let (client, driver) = database
        .connect(Some("postgres"))
        .await
        .context("connecting to the `postgres` database")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .context("checking whether the database exists")?
        .is_some();
    if !exists {
        // CREATE DATABASE copies a template and checkpoints: on a busy host it can outlast a
        // statement timeout tuned for the hot path (400 ms in tests), and failing start-up for
        // that helps no one. Session-level, on this one-off connection only.
        client
            .batch_execute("SET statement_timeout = 0")
            .await
            .context("lifting the statement timeout for CREATE DATABASE")?;
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created the database"),
            // Another replica created it between our check and our statement.
            Err(err) if err.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
            Err(err) => {
                let code = err.code().map(|c| c.code().to_owned()).unwrap_or_default();
                anyhow::bail!(
                    "database `{name}` does not exist and could not be created (SQLSTATE {code})"
                );
            }
        }
    }
    close_session(client, driver).await;
    Ok(())
}

/// Ends a one-off session from [`Database::connect`]: drops the client, then waits for its
/// driver task, so the session is closed when this returns.
pub(crate) async fn close_session(
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
) {
    drop(client);
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the connection's end once the client is dropped: its failures reached the statements"
    )]
    let _ = driver.await;
}

/// Applies every migration not yet recorded; returns how many ran.
pub(crate) async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<usize> {
    let tx = client
        .transaction()
        .await
        .context("starting the migration transaction")?;
    // A migration may build an index over a large existing table (0005 does): the hot path's
    // statement timeout is not meant for it. The `IF NOT EXISTS` below would log a NOTICE
    // ("schema … already exists") at every start. Transaction-level, so both end with the
    // migrations.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL client_min_messages = warning")
        .await
        .context("lifting the statement timeout for the migrations")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    tx.batch_execute(
        r#"
        CREATE SCHEMA IF NOT EXISTS prereg;
        CREATE TABLE IF NOT EXISTS prereg.sync_schema_migrations (
            version integer PRIMARY KEY,
            name varchar(128) NOT NULL,
            applied_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
        )
        "#,
    )
    .await
    .context("creating the migrations table")?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM prereg.sync_schema_migrations", &[])
        .await
        .context("reading applied migrations")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| !applied.contains(v)) {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying migration {version} ({name})"))?;
        tx.execute(
            "INSERT INTO prereg.sync_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .with_context(|| format!("recording migration {version}"))?;
        count += 1;
    }
    tx.commit().await.context("committing migrations")?;
    Ok(count)
}

/// True when preparing failed only because the server could not be reached (not up yet,
/// starting, restarting): worth waiting for, unlike a refused privilege or a broken migration.
pub(crate) fn is_unreachable(err: &anyhow::Error) -> bool {
    // A TLS failure (an untrusted certificate) will not heal by waiting.
    let tls_refused = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.is::<rustls::Error>())
    });
    !tls_refused
        && err.chain().any(|cause| {
            cause
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|err| match err.code() {
                    None => true,
                    Some(code) => {
                        *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::ADMIN_SHUTDOWN
                    }
                })
        })
}

/// `prereg-sync migrate` and start-up: create the database if allowed, then migrate.
pub async fn prepare_database(
    database: &Database,
    create_if_missing: bool,
) -> anyhow::Result<usize> {
    if create_if_missing {
        create_database_if_missing(database).await?;
    }
    let (mut client, driver) = database
        .connect(None)
        .await
        .context("connecting to the database")?;
    let applied = run(&mut client).await?;
    close_session(client, driver).await;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_is_a_registered_migration_in_order() {
        let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql") && name.as_bytes()[0].is_ascii_digit())
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            MIGRATIONS.len(),
            "a file in sql/ is not in MIGRATIONS"
        );
        for (file, (version, name, _)) in files.iter().zip(MIGRATIONS) {
            assert_eq!(file, &format!("{version:04}_{name}.sql"));
        }
    }
}
