//! What prereg-sync's integration tests share (`tests/worker`, `tests/outage`, `tests/cluster`,
//! `tests/contract`, `tests/request_path.rs`): every test gets its own RabbitMQ vhost and its own
//! PostgreSQL database ([`TestEnv`]), removed when it is dropped, so tests run in parallel
//! sharing nothing but the two servers.
//!
//! - `services`: which RabbitMQ and PostgreSQL those are (the machine's, or the pair the
//!   `PRS_TEST_*` variables name) and their command-line tools;
//! - `env`: the test's vhost and database, its configuration, the command-line tools;
//! - `app`: the worker under test, in process or as the real binary, and its HTTP endpoints;
//! - `db`: the test's own queries;
//! - `broker`: the contract's names and a test-side AMQP client;
//! - `broker_user`: a RabbitMQ user of a test's own, deleted when dropped;
//! - `fixtures`: PRIDs, requests and the rows that make them known;
//! - `reply`: what a reply says, the replies of a stream by transaction, and the JSON Schemas
//!   every received reply is checked against;
//! - `proxy`: a TCP proxy that can cut a service off;
//! - `keys`, `scratch`: the HTTP ingress's identity provider (a key pair, its JWKS, tokens) and
//!   the directory of a test's files;
//! - `wait`: polling for what the worker does in its own time.

mod app;
mod broker;
mod broker_user;
mod db;
mod env;
mod fixtures;
mod keys;
mod proxy;
mod reply;
mod scratch;
mod services;
mod wait;

pub use app::{metric_at, prereg_sync, terminate};
pub use broker::{Broker, DLQ, EXCHANGE, REPLY_QUEUE, REQUEST_QUEUE, ROUTING_KEY};
pub use broker_user::{ALL_PERMISSIONS, BrokerUser};
pub use env::{TestEnv, config_dir, default_settings, must};
pub use fixtures::{
    REQUEST_TIME, derived_transaction_id, now_utc, prids, properties, request_body,
};
pub use keys::{CLIENT, ISSUER, KID, Keys};
pub use proxy::Proxy;
pub use reply::{
    Answers, ERROR_SCHEMA, INGRESS_SCHEMA, REQUEST_SCHEMA, SUCCESS_SCHEMA, all_identical,
    assert_valid, by_transaction, check_reply_body, error_code, header_int, header_str, json,
    record_answer,
};
pub use scratch::Scratch;
pub use services::{
    amqp_url, postgres_addr, postgres_ready, postgres_service, postgres_url, psql, rabbitmq_addr,
    rabbitmqctl, rabbitmqctl_command,
};
pub use wait::wait_until;
