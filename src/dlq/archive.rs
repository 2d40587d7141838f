//! `dlq export` and `dlq replay --from-file`: an archive of dead-lettered messages as JSON
//! lines, one message each, body base64-encoded and properties (headers included) as lapin
//! serialises them, so a message read back is byte for byte the one exported; beside them the
//! headers once more as plain strings and numbers, for `jq` (not read back). The file holds
//! PRIDs, so it is created with mode 0600 and never overwritten.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, ErrorKind, Lines, Write},
    iter::Enumerate,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};

use super::{
    Filter, Row, Summary,
    audit::Auditor,
    display,
    queue::DeadLetterQueue,
    rework::{self, Rework, ReworkOptions, Sink, Source},
};
use crate::{config::Settings, progress::Progress};

/// One archived message.
#[derive(Serialize, Deserialize)]
struct Archived {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    /// `properties.headers` readable (`jq '.headers["x-error-code"]'`); `properties` is what
    /// a replay reads.
    #[serde(default, skip_deserializing)]
    headers: serde_json::Value,
    body_base64: String,
}

/// Creates the archive file `file`, mode 0600; an existing file is never overwritten.
pub(crate) fn create_archive(file: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|err| {
            let why = match err.kind() {
                ErrorKind::AlreadyExists => {
                    "it exists, and an export never overwrites a file".into()
                }
                _ => err.to_string(),
            };
            anyhow::anyhow!("creating {}: {why}", file.display())
        })
}

/// Writes the matching messages of the snapshot to `out`, one line each; the queue is left as
/// it was. Returns how many were written.
pub(crate) async fn export(
    settings: &Settings,
    filter: &Filter,
    limit: Option<usize>,
    out: impl Write,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(out);
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
                headers: delivery
                    .properties
                    .headers()
                    .as_ref()
                    .map_or(serde_json::Value::Null, display::headers),
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

/// `dlq replay --from-file`: the matching archived messages published as a replay would
/// (original exchange and routing key, failure headers removed, `x-replay-count` incremented),
/// at most `rate` per second; `on_dry_run_match` is called with each message a dry run
/// selects. The file is read line by line and never changed.
pub(crate) async fn replay_file(
    settings: &Settings,
    rate: Option<f64>,
    options: &ReworkOptions,
    file: &Path,
    on_dry_run_match: impl FnMut(&Row),
) -> anyhow::Result<Summary> {
    let reader = Reader {
        lines: BufReader::new(
            File::open(file).with_context(|| format!("opening {}", file.display()))?,
        )
        .lines()
        .enumerate(),
    };
    let target = if options.dry_run {
        None
    } else {
        Some((
            DeadLetterQueue::open(&settings.amqp).await?,
            Auditor::connect(settings).await?,
        ))
    };
    let sink = target
        .as_ref()
        .map(|(queue, auditor)| (Replayer { queue, settings }, auditor));
    let summary = rework::run(
        reader,
        sink,
        Rework::Replay { rate },
        options,
        on_dry_run_match,
    )
    .await?;
    if let Some((queue, _)) = target {
        queue.close().await;
    }
    Ok(summary)
}

/// The archive read back, one message per line (blank lines skipped).
struct Reader {
    lines: Enumerate<Lines<BufReader<File>>>,
}

/// An archived message read back: its properties and decoded body.
struct Restored {
    properties: BasicProperties,
    body: Vec<u8>,
}

impl Source for Reader {
    type Message = Restored;

    async fn next(&mut self) -> anyhow::Result<Option<(Row, Restored)>> {
        for (index, line) in self.lines.by_ref() {
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
            let row = Row::from_parts(index as u64 + 1, &archived.properties, body.len());
            let restored = Restored {
                properties: archived.properties,
                body,
            };
            return Ok(Some((row, restored)));
        }
        Ok(None)
    }

    async fn keep(&mut self, _: Restored) -> anyhow::Result<bool> {
        // A message not replayed stays in the file only: nothing to do, nothing kept in a queue.
        Ok(false)
    }
}

/// Publishes archived messages as replays; the archive itself is never changed.
struct Replayer<'a> {
    queue: &'a DeadLetterQueue,
    settings: &'a Settings,
}

impl Sink<Restored> for Replayer<'_> {
    async fn act(&self, message: Restored) -> anyhow::Result<()> {
        let copy = rework::replay_copy(&message.properties, self.settings);
        self.queue.forward(copy, &message.body).await
    }
}
