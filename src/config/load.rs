//! Reading the layers, lowest precedence first: `default.toml`, `$PREREG_SYNC_ENV.toml`,
//! `AMQP_URL` / `DATABASE_URL` (or their `*_FILE` variants), then `PREREG_SYNC__*` variables.

use std::{collections::HashMap, path::Path};

use anyhow::Context;

use super::Settings;

/// The variables that set the two URLs directly (Docker and Kubernetes conventions).
const URL_VARIABLES: [(&str, &str); 2] = [("AMQP_URL", "AMQP"), ("DATABASE_URL", "DATABASE")];

impl Settings {
    /// Loads the layers from `config_dir` and the process environment.
    pub(crate) fn load(config_dir: &Path) -> anyhow::Result<Settings> {
        Self::load_from(config_dir, &std::env::vars().collect())
    }

    /// Like `Settings::load` with the environment given as a map, so tests need not mutate
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
}

fn environment_layer(vars: HashMap<String, String>) -> config::Environment {
    config::Environment::with_prefix("PREREG_SYNC")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("retry.delays")
        .with_list_parse_key("ingress.roles")
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

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the tests check the secrets the configuration read"
)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::QueueType;

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
    fn a_schedule_that_never_fires_is_refused() {
        for (variable, schedule) in [
            ("PREREG_SYNC__CONSUMED_JOB__SCHEDULE", "0 0 0 31 2 *"),
            ("PREREG_SYNC__REPORT__SCHEDULE", "0 0 0 1 1 * 2020"),
        ] {
            let err = format!("{:#}", load(&[(variable, schedule)]).unwrap_err());
            assert!(
                err.contains(&format!("`{schedule}` never fires")),
                "{variable}: {err}"
            );
        }
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
        std::fs::write(&path, "postgres://a:b@h/v\n").unwrap();
        let settings = load(&[("DATABASE_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(settings.database.url.expose_secret(), "postgres://a:b@h/v");
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
    fn a_broker_list_comes_from_any_layer_and_is_parsed() {
        let list = "amqp://u:s3cret@a:5681/v,amqp://u:s3cret@b:5682/v";
        let nodes = |settings: &Settings| {
            let nodes = &settings.amqp.nodes;
            (0..nodes.count())
                .map(|i| {
                    format!(
                        "{}:{}",
                        nodes.get(i).authority.host,
                        nodes.get(i).authority.port
                    )
                })
                .collect::<Vec<_>>()
        };
        for variable in ["AMQP_URL", "PREREG_SYNC__AMQP__URL"] {
            let settings = load(&[(variable, list)]).unwrap();
            assert_eq!(nodes(&settings), ["a:5681", "b:5682"], "{variable}");
            assert!(!settings.redacted_summary().contains("s3cret"));
        }
        let path = std::env::temp_dir().join(format!("prs-url-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, format!("{list}\n")).unwrap();
        let settings = load(&[("AMQP_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(nodes(&settings), ["a:5681", "b:5682"]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_bad_broker_entry_fails_loading_named_by_its_position() {
        for variable in ["AMQP_URL", "PREREG_SYNC__AMQP__URL"] {
            let err = format!(
                "{:#}",
                load(&[(variable, "amqp://u:s3cret@a/v,http://u:s3cret@b")]).unwrap_err()
            );
            assert_eq!(
                err,
                "invalid configuration: entry 2 of 2 is not a valid AMQP URL for key `amqp.url`",
                "{variable}"
            );
            let err = format!(
                "{:#}",
                load(&[(variable, "amqp://u:s3cret@a/v,")]).unwrap_err()
            );
            assert!(
                err.ends_with("entry 2 of 2 is not a valid AMQP URL for key `amqp.url`"),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let settings = load(&[("AMQP_URL", "amqp://u:topsecret@h/v")]).unwrap();
        assert!(!format!("{settings:?}").contains("topsecret"));
        assert!(!settings.redacted_summary().contains("topsecret"));
    }
}
