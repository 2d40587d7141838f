//! Layered configuration, as the contract orders it (lowest precedence first):
//! `config/default.toml`, `config/$PREREG_SYNC_ENV.toml`, `AMQP_URL` / `DATABASE_URL` (or their
//! `*_FILE` variants), then `PREREG_SYNC__<SECTION>__<KEY>` variables.
//!
//! Every struct denies unknown keys so a typo is an error naming the key rather than a default
//! silently in force. A setting with a type of its own (a cron schedule, a regex, `amqp.url`'s
//! nodes) is parsed into it here, once: a bad value fails loading, and the code that uses it
//! cannot fail on it. The two URLs carry credentials, so they are held as [`SecretString`]s
//! (`amqp.url` inside its [`NodeList`]): `Debug` never prints them and `redact_url` is the only
//! way they reach a log line.
//!
//! The sections are here; reading the layers is `load.rs`. `[validation]` deserialises into
//! [`ValidationRules`], owned by `message` with the code that applies them.

use std::{net::SocketAddr, time::Duration};

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use self::node_list::NodeList;
pub(crate) use self::redact::redact_url;
// The ingress's and the TLS settings are part of `Settings`, so public with it; `ingress` and
// `tls` themselves are crate-private.
pub use crate::ingress::settings::{
    AuthSettings, IngressSection, IngressSettings, JwtSettings, KeySource,
};
use crate::message::ValidationRules;
pub use crate::tls::{AmqpTlsSettings, PostgresTlsMode, PostgresTlsSettings, ServerTls};

mod de;
mod load;
pub(crate) mod node_list;
mod redact;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub worker: WorkerSettings,
    pub database: DatabaseSettings,
    pub retry: RetrySettings,
    pub validation: ValidationRules,
    pub storage: StorageSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub consumed_job: ConsumedJobSettings,
    #[serde(default)]
    pub report: ReportSettings,
    pub ingress: IngressSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// `amqp.url`: one broker URL, or a cluster's nodes separated by commas.
    #[serde(rename = "url", deserialize_with = "node_list::deserialize")]
    pub nodes: NodeList,
    pub connection_name: String,
    pub exchange: String,
    pub routing_key: String,
    pub request_queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub reply_queue: String,
    pub retry_queue_prefix: String,
    pub queue_type: QueueType,
    pub delivery_limit: u32,
    pub prefetch: u16,
    /// Unset: any queue not starting with `<exchange>.` plus the default reply queue.
    #[serde(default, with = "de::optional_regex")]
    pub reply_to_allow: Option<Regex>,
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Bound on opening a connection (TCP, TLS and the AMQP handshake).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The largest message the broker accepts (its own `max_message_size`): the client holds
    /// each delivery of the prefetch window whole, whatever the worker's body limit.
    pub max_message_size: u64,
    #[serde(default)]
    pub tls: AmqpTlsSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Deliveries processed at once; the rest wait in the prefetch window.
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Bytes the prefetch window may hold: `amqp.prefetch` × `amqp.max_message_size` above it
    /// is warned about at start.
    pub memory_budget: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub pool_size: usize,
    pub create_if_missing: bool,
    pub migrate_on_start: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    #[serde(default)]
    pub tls: PostgresTlsSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub immediate_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub immediate_min_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub immediate_max_delay: Duration,
    #[serde(deserialize_with = "de::durations")]
    pub delays: Vec<Duration>,
    /// Cap of the back-off between probes while a dependency is down.
    #[serde(with = "humantime_serde")]
    pub outage_max_delay: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub lang_code: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumedJobSettings {
    /// Run the job inside `prereg-sync run` on `schedule`.
    pub enabled: bool,
    /// Six fields (sec min hour day month weekday), UTC.
    #[serde(deserialize_with = "de::cron_schedule")]
    pub schedule: cron::Schedule,
    /// PRIDs moved per database transaction.
    pub chunk_size: usize,
    /// Written to `upd_by` of the rows the job archives (MOSIP's own job uses `prereg`).
    pub app_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// When set, `run` logs the day before's end-of-day report on this schedule (UTC) and
    /// records the run in the audit trail. Off by default.
    #[serde(default, deserialize_with = "de::optional_cron_schedule")]
    pub schedule: Option<cron::Schedule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// Cross-field checks serde cannot express.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.worker.concurrency > 0,
            "worker.concurrency must be at least 1"
        );
        anyhow::ensure!(self.amqp.prefetch > 0, "amqp.prefetch must be at least 1");
        anyhow::ensure!(
            self.database.pool_size > 0,
            "database.pool_size must be at least 1"
        );
        anyhow::ensure!(
            self.consumed_job.chunk_size > 0,
            "consumed_job.chunk_size must be at least 1"
        );
        anyhow::ensure!(
            self.amqp.delivery_limit >= 2,
            "amqp.delivery_limit must be at least 2"
        );
        anyhow::ensure!(
            self.validation.max_ids > 0 && self.validation.max_body_bytes > 0,
            "validation.max_ids and validation.max_body_bytes must be positive"
        );
        Ok(())
    }

    /// A few key settings on one line, `key=value` separated by spaces, the URLs with their
    /// passwords redacted: the start-up log's `config` field. Not the whole configuration.
    #[allow(
        clippy::disallowed_methods,
        reason = "the URL is exposed only to be redacted"
    )]
    pub fn redacted_summary(&self) -> String {
        format!(
            "amqp.url={} database.url={} prefetch={} concurrency={} pool_size={} queue_type={:?}",
            self.amqp.nodes.redacted(),
            redact_url(self.database.url.expose_secret()),
            self.amqp.prefetch,
            self.worker.concurrency,
            self.database.pool_size,
            self.amqp.queue_type,
        )
    }
}
