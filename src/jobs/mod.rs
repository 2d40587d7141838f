//! Scheduled and operator-run jobs: the consumed-status job, the end-of-day report and
//! retention purges.

pub(crate) mod consumed;
pub(crate) mod maintenance;
pub(crate) mod report;
pub(crate) mod schedule;
