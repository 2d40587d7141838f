//! Layered configuration, as the contract orders it (lowest precedence first):
//! `config/default.toml`, `config/$PREREG_SYNC_ENV.toml`, `AMQP_URL` / `DATABASE_URL` (or their
//! `*_FILE` variants), then `PREREG_SYNC__<SECTION>__<KEY>` variables.
//!
//! Every struct denies unknown keys so a typo is an error naming the key rather than a default
//! silently in force. The two URLs carry credentials, so they are [`SecretString`]s: `Debug` prints
//! them redacted and [`redact_url`] is the only way they reach a log line.

use std::{collections::HashMap, net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{
    message::prid::{PridFormat, PridRules},
    tls::{AmqpTlsSettings, PostgresTlsSettings},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub worker: WorkerSettings,
    pub database: DatabaseSettings,
    pub retry: RetrySettings,
    pub validation: ValidationSettings,
    pub storage: StorageSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub consumed_job: ConsumedJobSettings,
    #[serde(default)]
    pub report: ReportSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: SecretString,
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
    #[serde(default, with = "serde_regex")]
    pub reply_to_allow: Option<Regex>,
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
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
    #[serde(deserialize_with = "durations")]
    pub delays: Vec<Duration>,
    /// Cap of the back-off between probes while a dependency is down.
    #[serde(with = "humantime_serde")]
    pub outage_max_delay: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSettings {
    pub prid_format: PridFormat,
    #[serde(default)]
    pub prid_rules: PridRules,
    pub require_known_application: bool,
    #[serde(default, with = "humantime_serde")]
    pub max_request_age: Option<Duration>,
    pub max_body_bytes: usize,
    pub max_ids: usize,
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
    #[serde(deserialize_with = "cron_schedule")]
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
    #[serde(default, deserialize_with = "optional_cron_schedule")]
    pub schedule: Option<cron::Schedule>,
}

fn optional_cron_schedule<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<cron::Schedule>, D::Error> {
    cron_schedule(d).map(Some)
}

/// A six-field cron expression; the seven-field form (with year) is accepted too.
fn cron_schedule<'de, D: serde::Deserializer<'de>>(d: D) -> Result<cron::Schedule, D::Error> {
    let raw = String::deserialize(d)?;
    let fields = raw.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(serde::de::Error::custom(format!(
            "`{raw}` has {fields} fields; six are expected (sec min hour day month weekday)"
        )));
    }
    raw.parse()
        .map_err(|e| serde::de::Error::custom(format!("`{raw}`: {e}")))
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

/// A list of humantime durations.
fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let wrapped = Vec::<humantime_serde::Serde<Duration>>::deserialize(d)?;
    Ok(wrapped
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

/// `serde` glue for an optional regex given as a string.
mod serde_regex {
    use regex::Regex;
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|pattern| Regex::new(&pattern).map_err(D::Error::custom))
            .transpose()
    }
}

/// The variables that set the two URLs directly (Docker and Kubernetes conventions).
const URL_VARIABLES: [(&str, &str); 2] = [("AMQP_URL", "AMQP"), ("DATABASE_URL", "DATABASE")];

impl Settings {
    /// Loads the layers from `config_dir` and the process environment.
    pub fn load(config_dir: &Path) -> anyhow::Result<Settings> {
        Self::load_from(config_dir, &std::env::vars().collect())
    }

    /// Like [`Settings::load`] with the environment given as a map, so tests need not mutate
    /// the process environment.
    pub fn load_from(
        config_dir: &Path,
        vars: &HashMap<String, String>,
    ) -> anyhow::Result<Settings> {
        let env = |name: &str| vars.get(name).cloned();
        let mut builder = config::Config::builder()
            .add_source(config::File::from(config_dir.join("default.toml")).required(true));
        if let Some(name) = env("PREREG_SYNC_ENV") {
            builder = builder.add_source(
                config::File::from(config_dir.join(format!("{name}.toml"))).required(true),
            );
        }
        let mut url_overrides = HashMap::new();
        for (variable, section) in URL_VARIABLES {
            if let Some(url) = url_from_env(variable, &env)? {
                url_overrides.insert(format!("PREREG_SYNC__{section}__URL"), url);
            }
        }
        let prefixed: HashMap<String, String> = vars
            .iter()
            .filter(|(key, _)| key.starts_with("PREREG_SYNC__"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let settings = builder
            .add_source(environment_layer(url_overrides))
            .add_source(environment_layer(prefixed))
            .build()
            .context("reading configuration")?
            .try_deserialize::<Settings>()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.check()?;
        Ok(settings)
    }

    /// Cross-field checks serde cannot express.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.worker.concurrency > 0,
            "worker.concurrency must be at least 1"
        );
        anyhow::ensure!(self.amqp.prefetch > 0, "amqp.prefetch must be at least 1");
        crate::amqp::nodes::Nodes::parse(&self.amqp.url)?;
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

    /// The effective configuration as TOML-ish lines with credentials redacted, for `--help`
    /// style dumps and start-up logs.
    pub fn redacted_summary(&self) -> String {
        format!(
            "amqp.url={} database.url={} prefetch={} concurrency={} pool_size={} queue_type={:?}",
            redact_url(self.amqp.url.expose_secret()),
            redact_url(self.database.url.expose_secret()),
            self.amqp.prefetch,
            self.worker.concurrency,
            self.database.pool_size,
            self.amqp.queue_type,
        )
    }
}

fn environment_layer(vars: HashMap<String, String>) -> config::Environment {
    config::Environment::with_prefix("PREREG_SYNC")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("retry.delays")
        .with_list_parse_key("validation.prid_rules.not_start_with")
        .with_list_parse_key("validation.prid_rules.restricted_numbers")
        .source(Some(vars.into_iter().collect()))
}

/// `NAME` or `NAME_FILE`; a file's trailing newline is not part of the URL. Both set is refused:
/// which one wins would be a silent guess, and the losing one is usually the intended secret.
fn url_from_env(
    variable: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    let file_variable = format!("{variable}_FILE");
    let Some(path) = env(&file_variable) else {
        return Ok(env(variable));
    };
    if env(variable).is_some() {
        anyhow::bail!("both {variable} and {file_variable} are set: set only one");
    }
    let url = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {file_variable} ({path})"))?;
    Ok(Some(url.trim_end().to_owned()))
}

/// A URL with its password replaced by `***`; anything unparsable is hidden whole, because it
/// might be a credential typed into the wrong variable. Handles both kinds of list: several
/// URLs separated by commas (`amqp.url` naming a cluster) and one URL with several hosts
/// (`postgres://u:pw@h1:5432,h2:5432/db`), which the `url` crate cannot parse.
pub fn redact_url(raw: &str) -> String {
    let mut urls: Vec<String> = Vec::new();
    for part in raw.split(',') {
        match urls.last_mut() {
            // A part without a scheme continues the previous URL's host list.
            Some(previous) if !part.contains("://") => {
                previous.push(',');
                previous.push_str(part);
            }
            _ => urls.push(part.to_owned()),
        }
    }
    urls.iter()
        .map(|url| redact_one(url))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(raw: &str) -> String {
    if let Ok(mut url) = url::Url::parse(raw) {
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "***".into()
                    } else {
                        value
                    };
                    (key.into_owned(), value.into_owned())
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return url.to_string();
    }
    // A multi-host URL: `scheme://[user[:password]@]host:port,host:port/...`. Only the user
    // part and the path are kept around the host list; a query is dropped whole (it may hold
    // `password=`).
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, "?…"),
        None => (rest, ""),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{user_info}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(Path::new("config"), &vars)
    }

    #[test]
    fn defaults_match_the_contract() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.amqp.exchange, "prereg.reverse-sync");
        assert_eq!(settings.amqp.queue_type, QueueType::Quorum);
        assert_eq!(settings.amqp.delivery_limit, 20);
        assert_eq!(settings.database.pool_size, 10);
        assert_eq!(settings.retry.delays.len(), 3);
        assert_eq!(settings.validation.max_ids, 10_000);
        assert!(settings.validation.max_request_age.is_none());
        assert!(settings.consumed_job.enabled);
        assert_eq!(settings.consumed_job.chunk_size, 500);
        assert_eq!(settings.consumed_job.schedule.source(), "0 0 0 * * *");
        assert!(
            settings.report.schedule.is_none(),
            "the report is off by default"
        );
    }

    #[test]
    fn url_variables_override_the_file() {
        let settings = load(&[("DATABASE_URL", "postgres://u:pw@db/x")]).unwrap();
        assert_eq!(
            settings.database.url.expose_secret(),
            "postgres://u:pw@db/x"
        );
    }

    #[test]
    fn url_file_is_read_and_trimmed() {
        let path = std::env::temp_dir().join(format!("prs-url-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "amqp://a:b@h/v\n").unwrap();
        let settings = load(&[("AMQP_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(settings.amqp.url.expose_secret(), "amqp://a:b@h/v");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_url_and_its_file_variable_together_are_refused() {
        for variable in ["AMQP_URL", "DATABASE_URL"] {
            let file_variable = format!("{variable}_FILE");
            let err = load(&[(variable, "x://secret@h"), (&file_variable, "/nonexistent")])
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("both {variable} and {file_variable} are set: set only one")
            );
        }
    }

    #[test]
    fn redaction_hides_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert_eq!(redact_url("s3cret"), "<unparsable URL>");
    }

    #[test]
    fn redaction_covers_every_node_of_a_list() {
        assert_eq!(
            redact_url("amqp://u:s3cret@a:5681/v,amqp://u:s3cret@b:5682/v"),
            "amqp://u:***@a:5681/v,amqp://u:***@b:5682/v"
        );
        let multi_host = "postgres://u:s3cret@h1:5433,h2:5434/db?target_session_attrs=read-write&password=s3cret";
        let redacted = redact_url(multi_host);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(
            redacted.starts_with("postgres://u:***@h1:5433,h2:5434/db"),
            "{redacted}"
        );
        let in_query = redact_url("postgres://h/db?user=u&password=s3cret");
        assert!(!in_query.contains("s3cret"), "{in_query}");
    }

    #[test]
    fn a_broker_list_comes_from_any_layer_and_is_checked() {
        let list = "amqp://u:s3cret@a:5681/v,amqp://u:s3cret@b:5682/v";
        for variable in ["AMQP_URL", "PREREG_SYNC__AMQP__URL"] {
            let settings = load(&[(variable, list)]).unwrap();
            assert_eq!(settings.amqp.url.expose_secret(), list, "{variable}");
            assert!(!settings.redacted_summary().contains("s3cret"));
        }
        let path = std::env::temp_dir().join(format!("prs-url-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, format!("{list}\n")).unwrap();
        let settings = load(&[("AMQP_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(settings.amqp.url.expose_secret(), list);
        std::fs::remove_file(path).unwrap();
        let err = load(&[("AMQP_URL", "amqp://u:s3cret@a/v,")]).unwrap_err();
        assert!(!format!("{err:#}").contains("s3cret"), "{err:#}");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let settings = load(&[("AMQP_URL", "amqp://u:topsecret@h/v")]).unwrap();
        assert!(!format!("{settings:?}").contains("topsecret"));
        assert!(!settings.redacted_summary().contains("topsecret"));
    }
}
