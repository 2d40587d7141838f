//! `Application::build(settings)`: the one way to assemble a worker (with the HTTP ingress when
//! `ingress.listen` is set), used by `prereg-sync run` and by the integration tests alike;
//! `Application::build_ingress(settings)`: the ingress alone, for `prereg-sync ingress`.

use std::net::SocketAddr;

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    health::Health,
    http,
    ingress::{self, BoundIngress},
    jobs::{
        consumed::ConsumedJob,
        schedule::{consumed_job_on_schedule, report_on_schedule},
    },
    processor::Processor,
    storage::{self, migrate},
    telemetry::Metrics,
    worker::Worker,
};

pub struct Application {
    /// `None` for `prereg-sync ingress`: no consumer, no migrations, no scheduled jobs.
    worker: Option<Worker>,
    ingress: Option<BoundIngress>,
    /// The database connections: the worker, the ingress, the probe, the job and the report
    /// take handles to it; closed when the application stops.
    pool: Pool,
    health: Health,
    http_addr: SocketAddr,
    http_shutdown: CancellationToken,
    http_task: tokio::task::JoinHandle<()>,
    database: storage::Database,
    create_if_missing: bool,
    migrate_on_start: bool,
    outage_max_delay: std::time::Duration,
    shutdown_grace: std::time::Duration,
    /// The consumed-status job and its schedule, when enabled; taken when the worker runs.
    scheduled_job: Option<(ConsumedJob, cron::Schedule)>,
    /// The end-of-day report's schedule, when set.
    report_schedule: Option<cron::Schedule>,
}

impl Application {
    /// Builds every part and binds the HTTP port; connects to nothing yet, so a worker started
    /// before its broker or database waits for them in [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::assemble(settings, true).await
    }

    /// The HTTP ingress alone (`prereg-sync ingress`): requests are published for workers
    /// running elsewhere; `ingress.listen` must be set.
    pub async fn build_ingress(settings: Settings) -> anyhow::Result<Application> {
        anyhow::ensure!(
            settings.ingress.0.is_some(),
            "ingress.listen is not set: the ingress is off"
        );
        Self::assemble(settings, false).await
    }

    async fn assemble(settings: Settings, consume: bool) -> anyhow::Result<Application> {
        tracing::info!(config = %settings.redacted_summary(), "starting");
        let Settings {
            amqp,
            worker,
            database,
            retry,
            validation,
            storage: store,
            http: http_settings,
            log: _,
            consumed_job,
            report,
            ingress: ingress_settings,
        } = settings;
        let pool = storage::build_pool(&database)?;
        let metrics = Metrics::new();
        let health = Health::new(metrics.clone());
        let http_shutdown = CancellationToken::new();
        let (http_addr, http_task) = http::serve(
            http_settings.listen,
            health.clone(),
            metrics.clone(),
            http_shutdown.clone(),
        )
        .await?;
        let ingress = match &ingress_settings.0 {
            Some(ingress_settings) => {
                let shared = ingress::Shared {
                    amqp: amqp.clone(),
                    retry_delays: retry.delays.clone(),
                    pool: pool.clone(),
                    health: health.clone(),
                    metrics: metrics.clone(),
                    max_body_bytes: validation.max_body_bytes,
                    shutdown_grace: worker.shutdown_grace,
                };
                let bound = BoundIngress::bind(ingress_settings, shared, consume).await?;
                tracing::info!(listen = %bound.addr(), "ingress listening");
                Some(bound)
            }
            None => None,
        };
        let scheduled_job = (consume && consumed_job.enabled).then(|| {
            let job = ConsumedJob::new(
                pool.clone(),
                consumed_job.chunk_size,
                consumed_job.app_id.clone(),
                metrics.clone(),
            );
            (job, consumed_job.schedule.clone())
        });
        let outage_max_delay = retry.outage_max_delay;
        let worker_app = if consume {
            let processor = Processor::new(pool.clone(), &validation, store, metrics.clone());
            Some(Worker::new(
                amqp,
                &worker,
                &retry,
                processor,
                pool.clone(),
                health.clone(),
                metrics,
            ))
        } else {
            None
        };
        Ok(Application {
            worker: worker_app,
            ingress,
            pool,
            health,
            http_addr,
            http_shutdown,
            http_task,
            database: storage::Database::new(&database)?,
            create_if_missing: database.create_if_missing,
            migrate_on_start: consume && database.migrate_on_start,
            outage_max_delay,
            shutdown_grace: worker.shutdown_grace,
            scheduled_job,
            report_schedule: report.schedule.filter(|_| consume),
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served (port 0 in tests).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the HTTP ingress listens, when it is on.
    pub fn ingress_addr(&self) -> Option<SocketAddr> {
        self.ingress.as_ref().map(BoundIngress::addr)
    }

    /// Prepares the database (waiting for it if it is not up yet), then consumes until
    /// `shutdown`; in-flight deliveries are finished within the shutdown grace period.
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let watcher = {
            let health = self.health.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                health.set_shutting_down();
            })
        };
        // The ingress answers its requests in progress after the signal, alongside the
        // worker's drain, so both fit in the same grace period.
        let ingress = self
            .ingress
            .take()
            .map(|ingress| tokio::spawn(ingress.run(shutdown.clone())));
        let result = self.run(&shutdown).await;
        if let Some(ingress) = ingress
            && let Err(err) = ingress.await
        {
            tracing::error!(error = %err, "the ingress task failed");
        }
        watcher.abort();
        self.http_shutdown.cancel();
        #[allow(
            clippy::let_underscore_must_use,
            reason = "the HTTP task returns nothing; a panic in it was printed when it happened"
        )]
        let _ = self.http_task.await;
        self.pool.close();
        result
    }

    async fn run(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        if self.migrate_on_start {
            let prepare = || migrate::prepare_database(&self.database, self.create_if_missing);
            let backoff = ExponentialBuilder::default()
                .with_max_delay(self.outage_max_delay)
                .without_max_times()
                .with_jitter();
            let prepared = prepare
                .retry(backoff)
                .when(migrate::is_unreachable)
                .notify(|err, delay| tracing::warn!(error = %format!("{err:#}"), ?delay, "database not reachable yet; waiting"));
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                applied = prepared => {
                    let applied = applied.context("preparing the database")?;
                    tracing::info!(applied, "database migrations up to date");
                }
            }
        }
        let probe = tokio::spawn(self.health.clone().probe_database(
            self.pool.clone(),
            self.outage_max_delay,
            shutdown.clone(),
        ));
        // The job stops with the shutdown signal (or when consuming ends for good), between
        // chunks: each chunk is its own transaction, so nothing is half moved, and the run is
        // recorded. Its grace runs from the signal alongside the consumer's drain, so the
        // whole stop stays within `worker.shutdown_grace`; a chunk still running then is
        // abandoned (its transaction rolls back) and the next run records the run as FAILED.
        let stop_job = shutdown.child_token();
        let scheduler = self.scheduled_job.take().map(|(job, schedule)| {
            tokio::spawn(consumed_job_on_schedule(job, schedule, stop_job.clone()))
        });
        let reporter = self.report_schedule.take().map(|schedule| {
            tokio::spawn(report_on_schedule(
                self.pool.clone(),
                schedule,
                shutdown.clone(),
            ))
        });
        let grace = self.shutdown_grace;
        let job_stopped = async {
            let Some(mut scheduler) = scheduler else {
                return;
            };
            stop_job.cancelled().await;
            if tokio::time::timeout(grace, &mut scheduler).await.is_err() {
                tracing::warn!(
                    "shutdown grace period over; the running consumed-job chunk is abandoned"
                );
                scheduler.abort();
            }
        };
        let consuming = async {
            let consumed = match &self.worker {
                Some(worker) => worker.run(shutdown.clone()).await,
                None => {
                    shutdown.cancelled().await;
                    Ok(())
                }
            };
            stop_job.cancel();
            consumed
        };
        let (consumed, ()) = tokio::join!(consuming, job_stopped);
        probe.abort();
        // A report reads a few aggregates: nothing to finish at shutdown.
        if let Some(reporter) = reporter {
            reporter.abort();
        }
        consumed
    }
}
