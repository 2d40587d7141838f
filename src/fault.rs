//! Test-only fault injection, compiled in only with the `fault-injection` feature: the crash
//! switch that lets the crash-loop test make the real binary die on one chosen message.

use std::sync::OnceLock;

/// Transaction ID whose processing aborts the process (`PREREG_SYNC_FAULT_CRASH_ON`).
fn crash_on() -> Option<&'static str> {
    static CRASH_ON: OnceLock<Option<String>> = OnceLock::new();
    CRASH_ON
        .get_or_init(|| std::env::var("PREREG_SYNC_FAULT_CRASH_ON").ok())
        .as_deref()
}

/// Aborts (as a segfault or OOM kill would: no unwinding, no acks) on the configured ID.
pub fn maybe_crash(transaction_id: &str) {
    if crash_on() == Some(transaction_id) {
        eprintln!("fault-injection: crashing on purpose");
        std::process::abort();
    }
}
