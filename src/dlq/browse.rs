//! `dlq list` and `dlq show`: read the snapshot and hand every message back; nothing changes.

use std::collections::BTreeMap;

use super::{Filter, Row, queue::DeadLetterQueue};
use crate::config::Settings;

pub(crate) struct ListOptions {
    pub(crate) filter: Filter,
    pub(crate) limit: usize,
    pub(crate) group: bool,
    pub(crate) show_ids: bool,
}

/// What `dlq list` found.
pub(crate) enum Listing {
    /// The matching messages, at most the limit.
    Rows(Vec<Row>),
    /// With `group`: the count of matching messages per error code (all of them).
    Groups(BTreeMap<String, u64>),
}

/// `dlq list`: matching messages (at most `limit`), or with `group` the count per error code.
pub(crate) async fn list(settings: &Settings, options: &ListOptions) -> anyhow::Result<Listing> {
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let mut rows = Vec::new();
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    queue
        .inspect(|position, delivery| {
            let row = Row::of(position, delivery, options.show_ids);
            if options.filter.matches(&row) {
                if options.group {
                    *groups
                        .entry(row.error_code.clone().unwrap_or_default())
                        .or_default() += 1;
                    return true;
                }
                rows.push(row);
            }
            rows.len() < options.limit
        })
        .await?;
    queue.close().await;
    Ok(if options.group {
        Listing::Groups(groups)
    } else {
        Listing::Rows(rows)
    })
}

/// `dlq show`: every property and header of one message (the body only with `show_ids`).
pub(crate) async fn show(
    settings: &Settings,
    transaction_id: &str,
    show_ids: bool,
) -> anyhow::Result<serde_json::Value> {
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let mut found = None;
    queue
        .inspect(|position, delivery| {
            let row = Row::of(position, delivery, show_ids);
            if row.transaction_id.as_deref() != Some(transaction_id) {
                return true;
            }
            let mut detail = serde_json::json!({
                "summary": row,
                "exchange": delivery.exchange.as_str(),
                "routing_key": delivery.routing_key.as_str(),
                "properties": delivery.properties,
            });
            if show_ids {
                detail["body"] = String::from_utf8_lossy(&delivery.data).into();
            }
            found = Some(detail);
            false
        })
        .await?;
    queue.close().await;
    found.ok_or_else(|| {
        anyhow::anyhow!("no dead-lettered message with transaction ID `{transaction_id}`")
    })
}
