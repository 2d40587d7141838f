//! The values of every bounded label. Each label set is an enum whose `ALL` lists every value:
//! the series created at zero at start-up and the ones counted later come from that one list,
//! so they cannot drift apart. [`ErrorCode`] and [`ReplyKind`] are label sets of their own.

use serde::{Serialize, Serializer};

use crate::message::{ErrorCode, ReplyKind};

/// A label whose values are fixed: every series exists from the start, and nothing outside the
/// set can become a series (never a transaction ID, a PRID or error text).
pub(crate) trait LabelSet: Copy + 'static {
    /// Every value, in the order their series are created.
    const ALL: &'static [Self];

    /// The label value.
    fn as_str(self) -> &'static str;

    /// The value whose label is `label`, if the set has one.
    fn from_label(label: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.as_str() == label)
    }
}

/// Declares a label set, the enum and its [`LabelSet`] implementation, from one list of
/// variants and their values.
macro_rules! label_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant,)+
        }

        impl LabelSet for $name {
            const ALL: &'static [$name] = &[$($name::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }
    };
}

label_set! {
    /// How a delivery ended, the `outcome` label of `prereg_sync_messages_total`.
    MessageOutcome {
        Stored => "stored",
        Duplicate => "duplicate",
        Rejected => "rejected",
        Retried => "retried",
        DeadLettered => "dead_lettered",
    }
}

label_set! {
    /// What became of a request's PRIDs, the `result` label of `prereg_sync_prids_total`.
    PridResult {
        Stored => "stored",
        AlreadyPresent => "already_present",
        RejectedFormat => "rejected_format",
        RejectedUnknown => "rejected_unknown",
    }
}

label_set! {
    /// The `kind` label of `prereg_sync_retries_total`.
    RetryKind {
        Immediate => "immediate",
        Delayed => "delayed",
    }
}

label_set! {
    /// The `state` label of `prereg_sync_db_pool_connections`.
    PoolState {
        Idle => "idle",
        Busy => "busy",
        Max => "max",
    }
}

label_set! {
    /// How a consumed-status job run ended: the `status` label of
    /// `prereg_sync_consumed_job_runs_total`, and the status the job records in its run history
    /// and audit rows, so the metric and the history share one vocabulary.
    JobRunStatus {
        Success => "SUCCESS",
        Partial => "PARTIAL",
        Failed => "FAILED",
        NothingToDo => "NOTHING_TO_DO",
    }
}

label_set! {
    /// What a consumed-status job run did with a PRID, the `result` label of
    /// `prereg_sync_consumed_job_rows_total`.
    JobPridResult {
        Moved => "moved",
        NotFound => "not_found",
        Failed => "failed",
    }
}

/// As its label value: the status in `consumed-job run --json`.
impl Serialize for JobRunStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl LabelSet for ErrorCode {
    const ALL: &'static [ErrorCode] = &ErrorCode::ALL;

    fn as_str(self) -> &'static str {
        self.code()
    }
}

impl LabelSet for ReplyKind {
    const ALL: &'static [ReplyKind] = &ReplyKind::ALL;

    fn as_str(self) -> &'static str {
        ReplyKind::as_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_distinct<L: LabelSet>() {
        let labels: std::collections::HashSet<_> = L::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(labels.len(), L::ALL.len());
        for value in L::ALL {
            assert_eq!(
                L::from_label(value.as_str()).map(L::as_str),
                Some(value.as_str())
            );
        }
    }

    #[test]
    fn every_set_has_distinct_values_that_read_back() {
        assert_distinct::<MessageOutcome>();
        assert_distinct::<PridResult>();
        assert_distinct::<RetryKind>();
        assert_distinct::<PoolState>();
        assert_distinct::<JobRunStatus>();
        assert_distinct::<JobPridResult>();
        assert_distinct::<ErrorCode>();
        assert_distinct::<ReplyKind>();
        assert_eq!(ErrorCode::from_label("not a code"), None);
    }
}
