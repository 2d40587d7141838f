//! `prereg-sync loadgen` and `loadgen cleanup`: the arguments, the guard on the database they
//! write to, and what they print. A run in which no request was acknowledged fails: without
//! seeded applications every request is rejected and dead-lettered, which is not a load test.

use std::time::Duration;

use clap::{Args, Subcommand};

use anyhow::Context;

use super::{Completion, Output, probe, usage_unless};
use crate::{
    config::{AuthSettings, Settings},
    ingress,
    loadgen::{self, LoadgenOptions, http::HttpTarget},
    progress::Progress,
    storage,
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct LoadgenArgs {
    #[command(subcommand)]
    command: Option<LoadgenCommand>,
    /// Number of requests.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// PRIDs per request.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Test systems only: first INSERT fake rows for the generated PRIDs into the live
    /// applicant_demographic table, so they count as known applications (`loadgen cleanup`
    /// removes them).
    #[arg(long)]
    seed_fake_applications: bool,
    /// Requests per second (default: as fast as confirms allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Give up waiting for replies after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// `amqp` (publish to the request exchange) or `http` (POST to the HTTP ingress at
    /// `ingress.listen`, with `--token`, else a `dev-token` when `ingress.dev_signing_key_file`
    /// is set).
    #[arg(long, default_value = "amqp", value_parser = ["amqp", "http"])]
    via: String,
    /// `--via http`: requests in flight at once (keep-alive connections).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// `--via http`: the bearer token.
    #[arg(long, env = "PREREG_SYNC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    guard: DatabaseGuard,
}

#[derive(Debug, Subcommand)]
enum LoadgenCommand {
    /// Delete the fake applications `--seed-fake-applications` inserted (rows with
    /// cr_by = 'loadgen'), from applicant_demographic and applicant_demographic_consumed.
    Cleanup {
        #[command(flatten)]
        guard: DatabaseGuard,
    },
}

#[derive(Debug, Args)]
struct DatabaseGuard {
    /// Write to this database although its name holds none of test, dev, demo, bench, loadgen:
    /// repeat its name.
    #[arg(long, value_name = "NAME")]
    allow_database: Option<String>,
}

impl DatabaseGuard {
    /// A usage error unless the configured database may get fake applications.
    fn check(&self, settings: &Settings) -> anyhow::Result<()> {
        let database = storage::Database::new(&settings.database)?;
        let refusal = loadgen::database_refusal(database.name(), self.allow_database.as_deref());
        usage_unless(refusal.is_none(), refusal.unwrap_or_default())
    }
}

impl LoadgenArgs {
    pub(super) async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        if let Some(LoadgenCommand::Cleanup { guard }) = self.command {
            guard.check(settings)?;
            let (live, consumed) = loadgen::remove_seeded_applications(settings).await?;
            return Output::new(
                format!("deleted {live} fake application(s) and {consumed} consumed one(s)"),
                serde_json::json!({ "applicant_demographic": live, "applicant_demographic_consumed": consumed }),
            );
        }
        if self.seed_fake_applications {
            self.guard.check(settings)?;
        }
        let http = match self.via.as_str() {
            "http" => Some(http_target(settings, self.concurrency, self.token).await?),
            _ => None,
        };
        let options = LoadgenOptions {
            requests: self.requests,
            batch: self.batch,
            seed: self.seed_fake_applications,
            rate: self.rate,
            timeout: self.timeout,
            progress: Progress::new(!json && http.is_none(), "loadgen replies"),
            http,
        };
        let report = loadgen::run(settings, &options).await?;
        anyhow::ensure!(
            report.acks > 0,
            "no request was acknowledged ({report}): without --seed-fake-applications every PRID \
             is unknown and each request is rejected into the dead-letter queue"
        );
        let mut output = Output::new(report.to_string(), report.to_json())?;
        if report.acks < report.requests {
            output.completion = Completion::Partial;
        }
        Ok(output)
    }
}

/// `--via http`'s target: the ingress on this host, the token given or a dev token.
async fn http_target(
    settings: &Settings,
    concurrency: usize,
    token: Option<String>,
) -> anyhow::Result<HttpTarget> {
    let ingress = settings
        .ingress
        .0
        .as_ref()
        .context("ingress.listen is not set: the ingress is off")?;
    let token = match (token, &ingress.auth) {
        (Some(token), _) => Some(token),
        (None, AuthSettings::Jwt(_)) => {
            Some(ingress::dev_token(ingress, "loadgen", Duration::from_secs(3600)).await?)
        }
        (None, _) => None,
    };
    Ok(HttpTarget {
        url: format!("http://{}{}", probe::target(ingress.listen), ingress.path),
        token,
        concurrency,
    })
}
