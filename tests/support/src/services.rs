//! The RabbitMQ and PostgreSQL the tests run against: the machine's (127.0.0.1:5672 with its
//! `rabbitmqctl`, 127.0.0.1:5432 run by Debian's `pg_ctlcluster`) unless the `PRS_TEST_*`
//! variables name another pair, as `scripts/rmq4-pg17 env` prints them for RabbitMQ 4.0 and
//! PostgreSQL 17. Read here and nowhere else.
//!
//! - `PRS_TEST_AMQP_PORT`: the broker's AMQP port on 127.0.0.1;
//! - `PRS_TEST_PG_PORT`: PostgreSQL's port on 127.0.0.1;
//! - `PRS_TEST_RABBITMQCTL`: the broker's `rabbitmqctl`;
//! - `PRS_TEST_SERVICE_CONTROL`: a command that takes `stop postgres` and `start postgres` (the
//!   outage tests).

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    sync::LazyLock,
};

use crate::must;

struct Services {
    amqp: SocketAddr,
    postgres: SocketAddr,
    rabbitmqctl: String,
    control: Option<String>,
}

static SERVICES: LazyLock<Services> = LazyLock::new(|| {
    let port = |name: &str, default: u16| {
        let port = std::env::var(name).map_or(default, |port| {
            port.parse()
                .unwrap_or_else(|_| panic!("{name}={port} is not a port"))
        });
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    };
    Services {
        amqp: port("PRS_TEST_AMQP_PORT", 5672),
        postgres: port("PRS_TEST_PG_PORT", 5432),
        rabbitmqctl: std::env::var("PRS_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into()),
        control: std::env::var("PRS_TEST_SERVICE_CONTROL").ok(),
    }
});

/// The broker's AMQP address.
pub fn rabbitmq_addr() -> SocketAddr {
    SERVICES.amqp
}

/// PostgreSQL's address.
pub fn postgres_addr() -> SocketAddr {
    SERVICES.postgres
}

/// An AMQP URL of the broker for `userinfo` (`user:password`) on `vhost`.
pub fn amqp_url(userinfo: &str, vhost: &str) -> String {
    format!("amqp://{userinfo}@{}/{vhost}", rabbitmq_addr())
}

/// A PostgreSQL URL of the server for `userinfo` (`user` or `user:password`) on `database`.
pub fn postgres_url(userinfo: &str, database: &str) -> String {
    format!("postgres://{userinfo}@{}/{database}", postgres_addr())
}

/// The broker's `rabbitmqctl`, to be given its arguments; for clean-ups that must not panic.
pub fn rabbitmqctl_command() -> Command {
    Command::new(&SERVICES.rabbitmqctl)
}

/// Runs the broker's `rabbitmqctl`, panicking if it fails; returns its output.
pub fn rabbitmqctl(args: &[&str]) -> String {
    must(rabbitmqctl_command().args(args))
}

/// `psql` on the server as the superuser, connected to `database`, quiet.
pub fn psql(database: &str) -> Command {
    let mut cmd = Command::new("psql");
    let port = postgres_addr().port().to_string();
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "postgres",
        "-d",
        database,
        "-q",
    ]);
    cmd
}

/// Whether PostgreSQL accepts connections.
pub fn postgres_ready() -> bool {
    let port = postgres_addr().port().to_string();
    Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", &port])
        .status()
        .is_ok_and(|status| status.success())
}

/// Stops (`-m fast`) or starts PostgreSQL: the machine's Debian cluster, or the pair's through
/// `PRS_TEST_SERVICE_CONTROL`.
pub fn postgres_service(action: &str) {
    let mut cmd = match &SERVICES.control {
        Some(control) => {
            let mut cmd = Command::new(control);
            cmd.args([action, "postgres"]);
            cmd
        }
        None => debian_cluster(action),
    };
    must(&mut cmd);
}

fn debian_cluster(action: &str) -> Command {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL version directory");
    let mut cmd = Command::new("pg_ctlcluster");
    cmd.args(["--skip-systemctl-redirect", &version, "main", action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    cmd
}
