//! `dlq export` and `dlq replay --from-file`: an archive of dead-lettered messages as JSON
//! lines, one message each, body base64-encoded and properties (headers included) as lapin
//! serialises them, so a message read back is byte for byte the one exported. The file holds
//! PRIDs, so it is created with mode 0600 and never overwritten.

use std::{
    fs::OpenOptions,
    io::{BufRead, BufReader, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};

use super::{
    Auditor, Filter, ReplayOptions, Row, Summary, pace, queue::DeadLetterQueue, replay_target,
};
use crate::{amqp::headers, config::Settings, progress::Progress, storage::audit::AuditEvent};

/// One archived message.
#[derive(Serialize, Deserialize)]
struct Archived {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    body_base64: String,
}

/// Writes the matching messages of the snapshot to `file` (which must not exist); the queue is
/// left as it was. Returns how many were written.
pub async fn export(
    settings: &Settings,
    filter: &Filter,
    limit: Option<usize>,
    file: &Path,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {} (it must not exist yet)", file.display()))?;
    let mut out = BufWriter::new(handle);
    let limit = limit.unwrap_or(usize::MAX) as u64;
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let mut written = 0;
    let mut failure = None;
    progress.set_total(queue.snapshot().await?.into());
    queue
        .inspect(|position, delivery| {
            progress.inc(1);
            if !filter.matches(&Row::of(position, delivery, false)) {
                return true;
            }
            let line = Archived {
                exchange: delivery.exchange.to_string(),
                routing_key: delivery.routing_key.to_string(),
                properties: delivery.properties.clone(),
                body_base64: STANDARD.encode(&delivery.data),
            };
            let result = serde_json::to_writer(&mut out, &line)
                .map_err(anyhow::Error::from)
                .and_then(|()| out.write_all(b"\n").map_err(anyhow::Error::from));
            if let Err(err) = result {
                failure = Some(err);
                return false;
            }
            written += 1;
            written < limit
        })
        .await?;
    progress.finish();
    queue.close().await;
    if let Some(err) = failure {
        return Err(err.context("writing the archive"));
    }
    out.flush().context("writing the archive")?;
    Ok(written)
}

/// Publishes the matching archived messages as a replay would (original exchange and routing
/// key, failure headers removed, `x-replay-count` incremented). The file is read line by line.
pub async fn replay_file(
    settings: &Settings,
    options: &ReplayOptions,
    file: &Path,
) -> anyhow::Result<Summary> {
    let reader = BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let target = if options.dry_run {
        None
    } else {
        Some((
            DeadLetterQueue::open(&settings.amqp).await?,
            Auditor::connect(settings).await?,
        ))
    };
    let limit = options.limit.unwrap_or(usize::MAX) as u64;
    let pace = options.rate.map(pace);
    let mut summary = Summary::default();
    for (index, line) in reader.lines().enumerate() {
        let line = line.context("reading the archive")?;
        if line.trim().is_empty() {
            continue;
        }
        let archived: Archived = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {} of the archive is not an archived message",
                index + 1
            )
        })?;
        let body = STANDARD
            .decode(&archived.body_base64)
            .context("decoding an archived body")?;
        summary.examined += 1;
        options.progress.inc(1);
        let row = Row::from_parts(index as u64 + 1, &archived.properties, body.len());
        if !options.filter.matches(&row) || summary.matched >= limit {
            continue;
        }
        summary.matched += 1;
        let Some((queue, auditor)) = &target else {
            println!(
                "would replay {}",
                row.transaction_id.as_deref().unwrap_or("-")
            );
            continue;
        };
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
        let (exchange, routing_key) = replay_target(&archived.properties, settings);
        let properties = headers::replay_properties(&archived.properties);
        queue
            .publish(&exchange, &routing_key, &body, properties)
            .await?;
        summary.acted += 1;
        auditor.message(&row, AuditEvent::Replayed).await?;
    }
    options.progress.finish();
    if let Some((queue, auditor)) = target {
        auditor.run(AuditEvent::DlqReplayRun).await?;
        queue.close().await;
    }
    Ok(summary)
}
