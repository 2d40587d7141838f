//! Liveness and readiness state, shared by the consumer, the database probe and `/readyz`.
//!
//! Ready means: the consumer is subscribed (when this process consumes), the HTTP ingress has
//! its broker session (when it is on), a database check succeeded in the last 5 s, the broker
//! has not blocked the connection (resource alarm), and no shutdown signal has arrived.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{storage::StorageError, telemetry::Metrics};

/// A database check older than this no longer counts as "the database is up".
const DB_CHECK_FRESHNESS: Duration = Duration::from_secs(5);
/// How often the database is checked while it is up.
const DB_CHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Health(Arc<Inner>);

struct Inner {
    metrics: Metrics,
    consuming: AtomicBool,
    /// False for `prereg-sync ingress`, which runs no consumer.
    consumer_expected: AtomicBool,
    ingress_expected: AtomicBool,
    ingress_linked: AtomicBool,
    broker_blocked: AtomicBool,
    shutting_down: AtomicBool,
    last_db_ok: std::sync::Mutex<Option<Instant>>,
    db_up: watch::Sender<bool>,
}

impl Health {
    /// Connectivity changes are logged here and reflected in `metrics`.
    pub(crate) fn new(metrics: Metrics) -> Health {
        Health(Arc::new(Inner {
            metrics,
            consuming: AtomicBool::new(false),
            consumer_expected: AtomicBool::new(true),
            ingress_expected: AtomicBool::new(false),
            ingress_linked: AtomicBool::new(false),
            broker_blocked: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            last_db_ok: std::sync::Mutex::new(None),
            db_up: watch::Sender::new(true),
        }))
    }

    pub(crate) fn is_ready(&self) -> bool {
        let db_fresh = self
            .0
            .last_db_ok
            .lock()
            .map(|t| t.is_some_and(|t| t.elapsed() < DB_CHECK_FRESHNESS))
            .unwrap_or(false);
        let consumer_ok = !self.0.consumer_expected.load(Ordering::Relaxed)
            || self.0.consuming.load(Ordering::Relaxed);
        let ingress_ok = !self.0.ingress_expected.load(Ordering::Relaxed)
            || self.0.ingress_linked.load(Ordering::Relaxed);
        consumer_ok
            && ingress_ok
            && db_fresh
            && *self.0.db_up.borrow()
            && !self.0.broker_blocked.load(Ordering::Relaxed)
            && !self.0.shutting_down.load(Ordering::Relaxed)
    }

    pub(crate) fn set_consuming(&self, consuming: bool) {
        self.0.consuming.store(consuming, Ordering::Relaxed);
        self.0.metrics.broker_connected(consuming);
    }

    /// This process runs the HTTP ingress (`consumer`: and the worker too).
    pub(crate) fn expect_ingress(&self, consumer: bool) {
        self.0.ingress_expected.store(true, Ordering::Relaxed);
        self.0.consumer_expected.store(consumer, Ordering::Relaxed);
    }

    pub(crate) fn set_ingress_linked(&self, linked: bool) {
        self.0.ingress_linked.store(linked, Ordering::Relaxed);
    }

    pub(crate) fn set_broker_blocked(&self, blocked: bool) {
        self.0.broker_blocked.store(blocked, Ordering::Relaxed);
    }

    pub(crate) fn set_shutting_down(&self) {
        self.0.shutting_down.store(true, Ordering::Relaxed);
    }

    pub(crate) fn database_up(&self) -> bool {
        *self.0.db_up.borrow()
    }

    /// A statement failed because the database is unreachable: stop taking deliveries until
    /// the probe sees it back.
    pub(crate) fn report_database_down(&self) {
        self.0.metrics.database_up(false);
        if self.0.db_up.send_replace(false) {
            tracing::warn!("database unreachable: holding in-flight deliveries, consuming paused");
        }
    }

    fn report_database_ok(&self) {
        if let Ok(mut last) = self.0.last_db_ok.lock() {
            *last = Some(Instant::now());
        }
        self.0.metrics.database_up(true);
        if !self.0.db_up.send_replace(true) {
            tracing::info!("database reachable again: resuming");
        }
    }

    /// Waits until the database is reported up (or returns at once if it is).
    pub(crate) async fn wait_for_database(&self) {
        let mut rx = self.0.db_up.subscribe();
        #[allow(
            clippy::let_underscore_must_use,
            reason = "fails only once the sender is gone, and `self` holds it"
        )]
        let _ = rx.wait_for(|up| *up).await;
    }

    /// Checks the database every second while it is up, and with back-off capped at
    /// `max_delay` while it is down, until `shutdown`.
    ///
    /// Pooled connections made before an outage are dropped (see [`forget_stale`]): after a
    /// failover they lead to the old primary, which is gone or, demoted, answers 25006
    /// (read-only). New ones follow `target_session_attrs=read-write` to the new primary.
    pub(crate) async fn probe_database(
        self,
        pool: Pool,
        max_delay: Duration,
        shutdown: CancellationToken,
    ) {
        let mut delay = DB_CHECK_INTERVAL;
        let mut down_since = None;
        loop {
            self.0.metrics.pool_status(pool.status());
            if !self.database_up() {
                // A statement failed on the hot path since the last check.
                down_since.get_or_insert_with(Instant::now);
            }
            match check(&pool).await {
                Ok(()) => {
                    if let Some(since) = down_since.take() {
                        forget_stale(&pool, Some(since));
                    }
                    self.report_database_ok();
                    delay = DB_CHECK_INTERVAL;
                }
                Err(err) => {
                    if self.database_up() {
                        tracing::warn!(error = %err, "database check failed");
                    }
                    self.report_database_down();
                    forget_stale(&pool, None);
                    down_since.get_or_insert_with(Instant::now);
                    delay = (delay * 2).min(max_delay);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// "Up" means "can do the worker's writes", not "answers": a read-only standby or a demoted
/// primary (`pg_is_in_recovery`), `default_transaction_read_only`, and a role that lost its
/// grants all answer `SELECT 1`, then fail every store with SQLSTATE 25006 or 42501, which hold
/// deliveries as an outage. Were the probe to pass, held deliveries would be retried about once
/// a second against a database that can never take them.
const CAN_WRITE: &str = r#"
    SELECT NOT pg_is_in_recovery()
    AND current_setting('transaction_read_only') = 'off'
    AND has_table_privilege('prereg.sync_transaction', 'SELECT, INSERT')
    AND has_table_privilege('prereg.processed_prereg_list', 'INSERT')
    AND has_table_privilege('prereg.intf_processed_prereg_list', 'INSERT')
    AND has_table_privilege('prereg.sync_audit', 'INSERT')
    AND has_table_privilege('prereg.sync_suspect', 'SELECT, INSERT, DELETE')
    AND has_table_privilege('prereg.sync_rejection', 'SELECT, INSERT, UPDATE, DELETE')
    AND has_table_privilege('prereg.applicant_demographic', 'SELECT')
    AND has_table_privilege('prereg.applicant_demographic_consumed', 'SELECT')
    "#;

/// Drops the idle pooled connections created before `since` (all of them when `None`). The
/// pool's own recycling keeps any connection that is not closed, and a connection to a demoted
/// primary is not: it answers every write with 25006, so without this a delivery could meet it
/// again after every resumption (the probe, which asks whether it can write, may well have run
/// on a connection to the new primary).
fn forget_stale(pool: &Pool, since: Option<Instant>) {
    let dropped = pool
        .retain(|_, made| since.is_some_and(|since| made.created >= since))
        .removed
        .len();
    if dropped > 0 {
        tracing::info!(
            dropped,
            "pooled database connections from before the outage dropped"
        );
    }
}

/// Whether the database can take the worker's writes now (its grants included): tells a role
/// that lost a grant (an outage) from a row-level security policy refusing one request's rows,
/// both SQLSTATE 42501.
pub(crate) async fn can_write(pool: &Pool) -> bool {
    check(pool).await.is_ok()
}

async fn check(pool: &Pool) -> Result<(), StorageError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(CAN_WRITE).await?;
    let writable: bool = client.query_one(&statement, &[]).await?.get(0);
    if writable {
        Ok(())
    } else {
        Err(StorageError::Unavailable(
            "the database answers but cannot take the worker's writes (read-only, or grants missing)".into(),
        ))
    }
}
