//! Waiting for what the worker does in its own time.

use std::time::{Duration, Instant};

/// Polls `done` every `every` until it holds; panics with `failure` once `limit` has passed
/// without it.
pub async fn wait_until(
    limit: Duration,
    every: Duration,
    failure: &str,
    mut done: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{failure}");
        // The pacing of the polls: `done` is the condition, and it has no event to await.
        tokio::time::sleep(every).await;
    }
}
