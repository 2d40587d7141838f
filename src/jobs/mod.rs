//! Scheduled and operator-run jobs: the consumed-status job, the end-of-day report and
//! retention purges.

pub mod consumed;
pub mod maintenance;
pub mod report;
pub mod schedule;
