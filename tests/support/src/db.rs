//! The test's own queries on its database (never through the worker's pool).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use lapin::BasicProperties;

use crate::{Broker, TestEnv};

impl TestEnv {
    /// A session on the test's database.
    pub async fn db(&self) -> Client {
        self.connect(&self.database).await
    }

    /// A session on `database` of the test's server (`admin_db`).
    pub async fn connect(&self, database: &str) -> Client {
        let (client, connection) =
            tokio_postgres::connect(&format!("{} dbname={database}", self.admin_db), NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to the database {database}: {e}"));
        tokio::spawn(connection);
        client
    }

    /// Runs the migrations without a worker (for fixtures before the worker starts).
    pub async fn migrate(&self) {
        let settings = self.settings();
        let database = prereg_sync::storage::Database::new(&settings.database).unwrap();
        prereg_sync::storage::migrate::prepare_database(&database, true)
            .await
            .unwrap();
    }

    /// The value of `sql`, a count.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Rows in `prereg.<table>`.
    pub async fn rows(&self, table: &str) -> i64 {
        self.count(&format!("SELECT count(*) FROM prereg.{table}"))
            .await
    }

    /// Polls `sql` (a count) until it reaches `at_least`; panics after `limit`.
    pub async fn wait_for_count(&self, sql: &str, at_least: i64, limit: Duration) -> i64 {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.count(sql).await;
            if n >= at_least {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{sql} stayed at {n} < {at_least} for {limit:?}"
            );
            // The pacing of the polls: a count changes with no event the test can await.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Holds an ACCESS EXCLUSIVE lock on the processed table until the returned client ends
    /// its transaction: every store waits (and times out under a short statement timeout).
    pub async fn lock_processed_table(&self) -> Client {
        let client = self.db().await;
        client
            .batch_execute(
                "BEGIN; LOCK TABLE prereg.processed_prereg_list IN ACCESS EXCLUSIVE MODE",
            )
            .await
            .unwrap();
        client
    }

    /// Waits until `sessions` sessions wait on a lock `holder` (a session of the test's) holds:
    /// the worker has reached the statement the test holds up. Panics after `limit`.
    pub async fn wait_for_blocked_by(&self, holder: &Client, sessions: i64, limit: Duration) {
        let row = holder
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap();
        let pid: i32 = row.get(0);
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE {pid} = ANY(pg_blocking_pids(pid))"
        );
        self.wait_for_count(&sql, sessions, limit).await;
    }

    /// Publishes a request that cannot be stored until it has taken `delayed` delayed-retry
    /// tiers: the processed table stays locked (every store times out, under a short statement
    /// timeout) until the worker counts that many delayed retries.
    pub async fn publish_failing_until_delayed_retries(
        &self,
        broker: &Broker,
        body: &[u8],
        properties: BasicProperties,
        delayed: f64,
    ) {
        let lock = self.lock_processed_table().await;
        broker.publish(body, properties).await;
        self.wait_for_metric(
            "prereg_sync_retries_total{kind=\"delayed\"}",
            delayed,
            Duration::from_secs(20),
        )
        .await;
        lock.batch_execute("COMMIT").await.unwrap();
    }
}
