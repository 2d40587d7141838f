//! High availability: the worker against a three-node RabbitMQ cluster (`scripts/cluster`) and a
//! PostgreSQL primary with a synchronous standby (`scripts/pg-standby`), nodes killed under
//! load. Every test pre-publishes 3,000 requests, faults the cluster mid-stream, and checks the
//! stream came through whole: every request answered, repeated replies byte-identical, no error
//! reply, each PRID stored once, the worker still running, nothing left in the request queue or
//! the DLQ. Each prints one `RESULT` line with its recovery time and counts (docs/scaling.md).
//!
//! The tests that kill and restart nodes are `serial_*`: `scripts/test` runs them alone, one at
//! a time (`node_list` needs no cluster and runs with the parallel tests). Each brings the cluster (and the standby pair) up itself if they
//! are not, so a test can also run on its own:
//! `cargo test --all-features --test cluster serial_… -- --test-threads=1 --nocapture`.
#![allow(
    clippy::print_stdout,
    reason = "the measured figures, printed beside the result (--nocapture)"
)]

mod broker;
mod database;
mod harness;
mod node_list;
