//! Test-only fault injection, compiled in only with the `fault-injection` feature: the crash
//! switch that lets the crash-loop test make the real binary die on one chosen message, and the
//! panic switch that makes the database batch holding one chosen message panic.

use std::sync::OnceLock;

/// Transaction ID whose processing aborts the process (`PREREG_SYNC_FAULT_CRASH_ON`).
fn crash_on() -> Option<&'static str> {
    static CRASH_ON: OnceLock<Option<String>> = OnceLock::new();
    CRASH_ON
        .get_or_init(|| std::env::var("PREREG_SYNC_FAULT_CRASH_ON").ok())
        .as_deref()
}

/// Aborts (as a segfault or OOM kill would: no unwinding, no acks) on the configured ID.
pub(crate) fn maybe_crash(transaction_id: &str) {
    if crash_on() == Some(transaction_id) {
        eprintln!("fault-injection: crashing on purpose");
        std::process::abort();
    }
}

/// Transaction ID whose store batch panics (`PREREG_SYNC_FAULT_PANIC_ON`).
fn panic_on() -> Option<&'static str> {
    static PANIC_ON: OnceLock<Option<String>> = OnceLock::new();
    PANIC_ON
        .get_or_init(|| std::env::var("PREREG_SYNC_FAULT_PANIC_ON").ok())
        .as_deref()
}

/// Panics when the configured ID is among `transaction_ids` (a bug in the batch handler).
pub(crate) fn maybe_panic<'a>(mut transaction_ids: impl Iterator<Item = &'a str>) {
    if let Some(target) = panic_on()
        && transaction_ids.any(|id| id == target)
    {
        panic!("fault-injection: panicking on purpose");
    }
}
