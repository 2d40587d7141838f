//! PostgreSQL: the connection pool, migrations, and the statements of the hot path.
//!
//! Errors from this layer never print a server message's DETAIL: PostgreSQL puts offending
//! values there (a PRID in a key violation), and logs must not carry PRIDs. `StorageError`
//! shows the SQLSTATE and a fixed description only.

pub(crate) mod audit;
pub(crate) mod batching;
pub mod migrate;
pub(crate) mod model;
pub(crate) mod rejections;
mod rows;
pub(crate) mod suspects;
pub(crate) mod transactions;

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::{NoTls, config::SslMode, error::SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{config::DatabaseSettings, retry::FailureClass, tls};

/// A database failure, safe to log.
pub(crate) enum StorageError {
    /// No connection could be had (server down, pool timed out, connection lost).
    Unavailable(String),
    /// The server answered with an error.
    Db(tokio_postgres::Error),
    /// A concurrent change invalidated what this attempt read; trying again settles it.
    Raced(&'static str),
    /// A bug met while handling the request (a panic caught at the batch boundary); trying
    /// again from the top, with the lookup first, settles what was or was not committed.
    Internal(&'static str),
    /// The failure of the batch this request was handled in, as every request of it but the
    /// first gets it (a driver error cannot be cloned): its class and description.
    OfBatch(FailureClass, String),
}

impl StorageError {
    /// Which recovery applies: see `retry` for what each class means.
    pub(crate) fn class(&self) -> FailureClass {
        let err = match self {
            StorageError::Unavailable(_) => return FailureClass::InfrastructureDown,
            StorageError::Raced(_) | StorageError::Internal(_) => {
                return FailureClass::Transient;
            }
            StorageError::OfBatch(class, _) => return *class,
            StorageError::Db(err) => err,
        };
        let Some(code) = err.code() else {
            // No SQLSTATE: the socket failed or closed, the server is gone for now.
            return FailureClass::InfrastructureDown;
        };
        classify_sqlstate(code)
    }
}

/// SQLSTATE classes (PostgreSQL appendix A) mapped to recovery: connection and resource
/// failures and privilege errors are not the message's fault; data and integrity errors can
/// never succeed on retry; contention and timeouts may.
pub(crate) fn classify_sqlstate(code: &SqlState) -> FailureClass {
    let class = &code.code()[..2];
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return FailureClass::Refused;
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return FailureClass::InfrastructureDown;
    }
    match class {
        "08" | "53" | "57" | "58" | "XX" => {
            if *code == SqlState::QUERY_CANCELED {
                FailureClass::Transient
            } else {
                FailureClass::InfrastructureDown
            }
        }
        "40" | "55" => FailureClass::Transient,
        "22" | "23" => FailureClass::Permanent,
        _ => FailureClass::Transient,
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.is_closed() {
            StorageError::Unavailable("connection closed".into())
        } else {
            StorageError::Db(err)
        }
    }
}

impl From<PoolError> for StorageError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => StorageError::Unavailable(describe(&err)),
            other => StorageError::Unavailable(other.to_string()),
        }
    }
}

/// The loggable part of a driver error: SQLSTATE and the server's primary message (which for
/// the statements prereg-sync runs names constraints and types, never values); no DETAIL.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let code = db.code();
            match sqlstate_name(code) {
                Some(name) => format!("SQLSTATE {} ({name})", code.code()),
                None => format!("SQLSTATE {}", code.code()),
            }
        }
        None => err.to_string(),
    }
}

/// Names of the SQLSTATEs an operator is most likely to meet, so a log line explains itself.
fn sqlstate_name(code: &SqlState) -> Option<&'static str> {
    [
        (SqlState::INSUFFICIENT_PRIVILEGE, "insufficient privilege"),
        (SqlState::UNIQUE_VIOLATION, "unique violation"),
        (SqlState::QUERY_CANCELED, "statement timeout or cancel"),
        (SqlState::T_R_SERIALIZATION_FAILURE, "serialization failure"),
        (SqlState::T_R_DEADLOCK_DETECTED, "deadlock"),
        (
            SqlState::UNDEFINED_TABLE,
            "undefined table: run `prereg-sync migrate`",
        ),
        (SqlState::TOO_MANY_CONNECTIONS, "too many connections"),
        (SqlState::ADMIN_SHUTDOWN, "server shutting down"),
    ]
    .into_iter()
    .find_map(|(known, name)| (known == *code).then_some(name))
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StorageError::Db(err) => write!(f, "database error: {}", describe(err)),
            StorageError::Raced(why) => write!(f, "database race: {why}"),
            StorageError::Internal(why) => write!(f, "internal error: {why}"),
            StorageError::OfBatch(_, description) => f.write_str(description),
        }
    }
}

/// `Debug` is `Display`: the driver's own `Debug` includes DETAIL.
impl std::fmt::Debug for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for StorageError {}

/// How to reach the database: the driver configuration (URL plus the session settings every
/// connection must have) and the TLS connector `database.tls` asks for.
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    pool_size: usize,
    connect_timeout: Duration,
}

impl Database {
    pub fn new(settings: &DatabaseSettings) -> anyhow::Result<Database> {
        #[allow(
            clippy::disallowed_methods,
            reason = "parsed into the connection configuration; a URL that fails is not echoed"
        )]
        let mut config: tokio_postgres::Config = settings
            .url
            .expose_secret()
            .parse()
            .map_err(|_| anyhow::anyhow!("database.url is not a valid PostgreSQL URL"))?;
        // `timestamp` columns have no zone: pin the session to UTC so now() and the values
        // written agree. The statement timeout keeps any wait far below the broker's consumer
        // timeout.
        let options = format!(
            "-c TimeZone=UTC -c statement_timeout={}",
            settings.statement_timeout.as_millis()
        );
        config
            .options(&options)
            .connect_timeout(settings.connect_timeout)
            .application_name("prereg-sync");
        let tls = tls::postgres_config(&settings.tls)?.map(MakeRustlsConnect::new);
        // libpq's way to ask for TLS; here it would end in the driver's bare "no TLS
        // implementation configured" at the first connection.
        anyhow::ensure!(
            tls.is_some() || config.get_ssl_mode() != SslMode::Require,
            "database.url asks for sslmode=require, but TLS to PostgreSQL is set by \
             database.tls.mode, which is \"disable\": set it to \"require\" or \"verify-full\" \
             (PREREG_SYNC__DATABASE__TLS__MODE) and ca_file"
        );
        if tls.is_some() {
            config.ssl_mode(SslMode::Require);
        }
        Ok(Database {
            config,
            tls,
            pool_size: settings.pool_size,
            connect_timeout: settings.connect_timeout,
        })
    }

    /// The database name the URL names.
    pub(crate) fn name(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// One connection outside the pool (migrations, one-off commands), to `dbname` or the
    /// configured database; its driver task ends when the client is dropped.
    pub async fn connect(
        &self,
        dbname: Option<&str>,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let mut config = self.config.clone();
        if let Some(dbname) = dbname {
            config.dbname(dbname);
        }
        match &self.tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, tokio::spawn(async move { drop(connection.await) })))
            }
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                Ok((client, tokio::spawn(async move { drop(connection.await) })))
            }
        }
    }

    /// The pool. Recycling checks only that the connection is not closed, without a round trip
    /// (one per checkout would cost the hot path a backend wake-up per request); a connection
    /// broken in a way not yet noticed fails its first statement with no SQLSTATE, which is
    /// handled as an outage: the delivery is held, the probe waits for the database, and the
    /// delivery is processed again from the top.
    pub(crate) fn pool(&self) -> anyhow::Result<Pool> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(self.config.clone(), NoTls, manager_config),
        };
        Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("building the database pool")
    }
}

/// The pool for `settings` (see [`Database::pool`]).
pub(crate) fn build_pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    Database::new(settings)?.pool()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_standby_pair_is_one_url_with_or_without_tls() {
        use tokio_postgres::config::TargetSessionAttrs;
        let url = "postgres://u:pw@h1:5433,h2:5434/db?target_session_attrs=read-write";
        for tls in ["disable", "require"] {
            let vars = [
                ("DATABASE_URL".to_owned(), url.to_owned()),
                (
                    "PREREG_SYNC__DATABASE__TLS__MODE".to_owned(),
                    tls.to_owned(),
                ),
            ]
            .into();
            let settings =
                crate::config::Settings::load_from(std::path::Path::new("config"), &vars).unwrap();
            let database = Database::new(&settings.database).unwrap();
            assert_eq!(database.config.get_hosts().len(), 2);
            assert_eq!(database.config.get_ports(), [5433, 5434]);
            assert_eq!(
                database.config.get_target_session_attrs(),
                TargetSessionAttrs::ReadWrite
            );
            assert_eq!(database.tls.is_some(), tls == "require");
            assert_eq!(database.name(), "db");
        }
    }

    #[test]
    fn sqlstates_are_classified() {
        use FailureClass::*;
        let cases = [
            (SqlState::T_R_DEADLOCK_DETECTED, Transient),
            (SqlState::T_R_SERIALIZATION_FAILURE, Transient),
            (SqlState::QUERY_CANCELED, Transient),
            (SqlState::LOCK_NOT_AVAILABLE, Transient),
            (SqlState::ADMIN_SHUTDOWN, InfrastructureDown),
            (SqlState::CANNOT_CONNECT_NOW, InfrastructureDown),
            (SqlState::CONNECTION_FAILURE, InfrastructureDown),
            (SqlState::TOO_MANY_CONNECTIONS, InfrastructureDown),
            (SqlState::DISK_FULL, InfrastructureDown),
            (SqlState::INSUFFICIENT_PRIVILEGE, Refused),
            (SqlState::READ_ONLY_SQL_TRANSACTION, InfrastructureDown),
            (SqlState::STRING_DATA_RIGHT_TRUNCATION, Permanent),
            (SqlState::NOT_NULL_VIOLATION, Permanent),
            (SqlState::UNIQUE_VIOLATION, Permanent),
            (SqlState::UNDEFINED_TABLE, Transient),
        ];
        for (code, class) in cases {
            assert_eq!(classify_sqlstate(&code), class, "{}", code.code());
        }
    }
}
