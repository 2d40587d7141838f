//! Logs and metrics. Every event the worker counts is one method of [`Metrics`] (`events.rs`);
//! when the event is also logged, that method writes the line too, so the line and the count
//! never disagree. Log lines that count nothing (start-up, shutdown, decisions along a
//! delivery's way) are written where they happen.
//!
//! Metric names are `prereg_sync_<name>_<unit>`, counters end `_total`, and labels take their
//! values from the fixed sets of [`labels`]: never a transaction ID, a PRID or error text.

mod events;
pub mod labels;
mod logging;
mod metrics;

pub use events::InFlight;
pub use labels::MessageOutcome;
pub use logging::init_logging;
pub use metrics::Metrics;
