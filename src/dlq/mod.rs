//! `prereg-sync dlq …`: inspect, replay, delete and archive dead-lettered requests.
//!
//! Every command works through the queue's snapshot (the messages present when it started) in
//! bounded memory; see `queue.rs` for how messages are read without loss. PRIDs are shown only
//! with `--show-ids`; the archive file holds them and is created mode 0600.
//!
//! The parts: `filter.rs` (which messages a command applies to), `browse.rs` (`list` and
//! `show`, which change nothing), `rework.rs` (the one loop of `replay`, `delete` and
//! `replay --from-file`), `archive.rs` (`export`, and the archive read back), `audit.rs` (the
//! audit rows of operator actions), `queue.rs` (taking and settling messages), `display.rs`
//! (header values as strings and numbers, for `show` and the archive). This module returns
//! data: rows, counts, summaries; `cli/dlq.rs` prints them.

mod archive;
mod audit;
mod browse;
mod display;
mod filter;
mod queue;
mod rework;

use lapin::message::Delivery;
use serde::Serialize;

pub(crate) use self::{
    archive::{create_archive, export, replay_file},
    browse::{ListOptions, Listing, list, show},
    display::readable_properties,
    filter::{Filter, parse_time},
    rework::{Rework, ReworkOptions, rework},
};
use crate::amqp::headers::{self, integer, string};

/// One dead-lettered message as the tools show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) position: u64,
    pub(crate) transaction_id: Option<String>,
    pub(crate) error_code: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) retry_count: i64,
    pub(crate) first_failure_time: Option<String>,
    pub(crate) death_count: i64,
    pub(crate) app_id: Option<String>,
    pub(crate) replay_count: i64,
    pub(crate) body_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pre_registration_ids: Option<Vec<String>>,
}

impl Row {
    /// Worker-dead-lettered messages carry the contract's headers; those the broker
    /// dead-lettered itself (delivery limit) are described from `x-death`.
    fn of(position: u64, delivery: &Delivery, show_ids: bool) -> Row {
        let mut row = Row::from_parts(position, &delivery.properties, delivery.data.len());
        if show_ids {
            row.pre_registration_ids = Some(prids_of(&delivery.data));
        }
        row
    }

    /// The row of a message known by its properties (a delivery or an archived message).
    fn from_parts(position: u64, properties: &lapin::BasicProperties, body_bytes: usize) -> Row {
        let table = properties.headers().as_ref();
        let broker_reason = headers::x_death_reason(table).map(|r| format!("broker: {r}"));
        Row {
            position,
            transaction_id: string(table, headers::TRANSACTION_ID)
                .map(str::to_owned)
                .or_else(|| properties.message_id().as_ref().map(|m| m.to_string())),
            error_code: string(table, headers::ERROR_CODE)
                .map(str::to_owned)
                .or(broker_reason.clone()),
            reason: string(table, headers::EXCEPTION_MESSAGE)
                .map(str::to_owned)
                .or(broker_reason),
            retry_count: integer(table, headers::RETRY_COUNT).unwrap_or(0),
            first_failure_time: string(table, headers::FIRST_FAILURE_TIME).map(str::to_owned),
            death_count: queue::death_count(properties),
            app_id: properties.app_id().as_ref().map(|a| a.to_string()),
            replay_count: integer(table, headers::REPLAY_COUNT).unwrap_or(0),
            body_bytes,
            pre_registration_ids: None,
        }
    }
}

/// The PRIDs of a request body, as far as it can be read (it may be the reason it failed).
fn prids_of(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let request = &value["request"];
    let ids = if request["preRegistrationIds"].is_array() {
        &request["preRegistrationIds"]
    } else {
        &request["pre_registration_ids"]
    };
    ids.as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What a replay or delete did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    /// Messages read (from the queue's snapshot or the archive).
    pub(crate) examined: u64,
    /// Of those, the ones the filter and the limit selected.
    pub(crate) matched: u64,
    /// Matched messages replayed or deleted (none in a dry run).
    pub(crate) acted: u64,
    /// Messages left in the queue (re-published at its tail); an archive keeps none.
    pub(crate) kept: u64,
}
