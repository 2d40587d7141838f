//! The log subscriber, with the guard that keeps payload-carrying crates quiet.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, LogSettings};

/// Crates that log statement parameters or frame contents (PRIDs, bodies) below INFO. Their
/// verbose levels are never enabled, whatever `RUST_LOG` says: the logging rule is not traded
/// for debuggability.
const PAYLOAD_LOGGING_CRATES: [&str; 4] = ["tokio_postgres", "postgres_", "lapin", "amq_protocol"];

/// Modules that log a whole message, body included, at any level: lapin logs every message
/// the broker returns (a mandatory reply to a queue that does not exist: the reply, with its
/// PRIDs) at WARN, as a byte array. The worker handles a returned message itself (the reply
/// counts as unroutable), so nothing is lost by silencing them.
const PAYLOAD_LOGGING_MODULES: [&str; 1] = ["lapin::returned_messages"];

fn may_carry_payload(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    PAYLOAD_LOGGING_MODULES.contains(&target)
        || (*metadata.level() > tracing::Level::INFO
            && PAYLOAD_LOGGING_CRATES
                .iter()
                .any(|prefix| target.starts_with(prefix)))
}

/// Installs the global tracing subscriber: human-readable or JSON lines on stderr, level from
/// `RUST_LOG` when set, else `log.level`.
pub fn init_logging(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let guard = tracing_subscriber::filter::filter_fn(|metadata| !may_carry_payload(metadata));
    let registry = tracing_subscriber::registry().with(filter).with(guard);
    let result = match settings.format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry
                .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
                .try_init()
        }
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    #[allow(
        clippy::let_underscore_must_use,
        reason = "a second initialisation (tests building several apps) keeps the first subscriber"
    )]
    let _ = result;
}
