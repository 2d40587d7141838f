//! Scheduled and operator-run jobs: the consumed-status job and retention purges.

pub mod consumed;
pub mod maintenance;
pub mod schedule;
