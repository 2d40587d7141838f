//! End-to-end tests of the worker against real RabbitMQ and PostgreSQL: real AMQP messages in,
//! real replies and rows out. Each test owns a vhost and a database (see the `support` crate,
//! tests/support).

mod schemas;

mod batch_failures;
mod batch_faults;
mod consumed_job;
mod consumed_job_schedule;
mod copies;
mod dlq_readable;
mod dlq_reads;
mod docs_commands;
mod failures;
mod hostile_input;
mod idempotency;
mod large_messages;
mod least_privilege;
mod lifecycle;
mod loadgen;
mod metric_names;
mod operations;
mod operator_audit;
mod operator_errors;
mod progress;
mod queue_upgrade;
mod read_only_database;
mod redelivery;
mod reply_queue;
mod report;
mod secrets_in_logs;
mod sender_routing;
mod shutdown;
mod silent_broker;
mod store;
mod tls;
mod upgrade_guards;
mod validation;
mod verdicts;
