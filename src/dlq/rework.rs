//! `dlq replay`, `dlq delete` and `dlq replay --from-file`: one loop for all three. It reads
//! messages from a [`Source`] (the queue's snapshot, or an archive file), selects them by
//! filter and limit, and acts on each selected one through a [`Sink`] (paced, audited); a dry
//! run has no sink and only tells the caller what it would act on.

use std::time::Duration;

use lapin::{BasicProperties, message::Delivery};

use super::{
    Filter, Row, Summary,
    audit::Auditor,
    queue::{Action, DeadLetterQueue, Forward, Walk},
};
use crate::{
    amqp::headers::{self, string},
    config::Settings,
    progress::Progress,
    storage::audit::AuditEvent,
};

/// What a command does with each selected message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rework {
    /// Back to its original exchange and routing key with a fresh retry budget,
    /// `x-replay-count` incremented, `x-replay-time` set and the failure headers removed (but
    /// `x-first-failure-time`); at most `rate` per second.
    Replay { rate: Option<f64> },
    /// Removed from the queue (the caller has required `--yes`).
    Delete,
}

impl Rework {
    /// The pause before each replayed message for `--rate` messages per second.
    fn pause(self) -> Option<Duration> {
        match self {
            Rework::Replay { rate } => {
                rate.map(|rate| Duration::from_secs_f64(1.0 / rate.max(0.001)))
            }
            Rework::Delete => None,
        }
    }

    fn message_event(self) -> AuditEvent {
        match self {
            Rework::Replay { .. } => AuditEvent::Replayed,
            Rework::Delete => AuditEvent::Deleted,
        }
    }

    fn run_event(self) -> AuditEvent {
        match self {
            Rework::Replay { .. } => AuditEvent::DlqReplayRun,
            Rework::Delete => AuditEvent::DlqDeleteRun,
        }
    }
}

/// Which messages, how many, and whether to act at all.
pub(crate) struct ReworkOptions {
    pub(crate) filter: Filter,
    /// At most this many messages are selected.
    pub(crate) limit: Option<usize>,
    /// Act on nothing; each message that would be acted on is handed to the caller instead.
    pub(crate) dry_run: bool,
    /// Counts the messages examined.
    pub(crate) progress: Progress,
    /// Who runs the command, for the audit trail (`--operator`, else the OS user).
    pub(crate) operator: String,
}

/// Where the loop reads messages from.
pub(super) trait Source {
    /// A message as the [`Sink`] needs it to act on it.
    type Message;

    /// The next message and its row, or `None` at the end.
    async fn next(&mut self) -> anyhow::Result<Option<(Row, Self::Message)>>;

    /// Leaves a message where it was (not selected, or a dry run); true when it stays in the
    /// queue (re-published at its tail), which the summary counts as kept.
    async fn keep(&mut self, message: Self::Message) -> anyhow::Result<bool>;
}

/// How the loop acts on the selected messages of a real (not dry) run.
pub(super) trait Sink<M> {
    /// Replays or deletes a selected message.
    async fn act(&self, message: M) -> anyhow::Result<()>;
}

/// `dlq replay` (`Rework::Replay`) and `dlq delete` (`Rework::Delete`) on the queue's snapshot;
/// `on_dry_run_match` is called with each message a dry run selects (and leaves in place).
pub(crate) async fn rework(
    settings: &Settings,
    mode: Rework,
    options: &ReworkOptions,
    on_dry_run_match: impl FnMut(&Row),
) -> anyhow::Result<Summary> {
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let auditor = if options.dry_run {
        None
    } else {
        Some(Auditor::connect(settings).await?)
    };
    let walk = queue.walk().await?;
    options.progress.set_total(walk.remaining().into());
    let sink = QueueSink {
        queue: &queue,
        settings,
        mode,
    };
    let target = auditor.as_ref().map(|auditor| (sink, auditor));
    let outcome = run(walk, target, mode, options, on_dry_run_match).await;
    queue.close().await;
    outcome
}

/// The loop: every message of `source` is examined; the selected ones (filter, then limit) are
/// acted on by `target`'s sink and audited by its auditor, the others kept. Without a target
/// (a dry run) every message is kept, and `on_dry_run_match` is called with each selected one.
pub(super) async fn run<S: Source, K: Sink<S::Message>>(
    mut source: S,
    target: Option<(K, &Auditor)>,
    mode: Rework,
    options: &ReworkOptions,
    mut on_dry_run_match: impl FnMut(&Row),
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let target = target.as_ref().map(|(sink, auditor)| (sink, *auditor));
    let looped = run_loop(
        &mut source,
        target,
        mode,
        options,
        &mut on_dry_run_match,
        &mut summary,
    )
    .await;
    options.progress.finish();
    if let Some((_, auditor)) = target {
        let completed = looped.is_ok();
        auditor
            .run(mode.run_event(), options, &summary, completed)
            .await?;
    }
    looped.map(|()| summary)
}

/// The loop of [`run`], counting into `summary` as it goes, so that a run stopped by an error
/// is audited with what it did.
async fn run_loop<S: Source, K: Sink<S::Message>>(
    source: &mut S,
    target: Option<(&K, &Auditor)>,
    mode: Rework,
    options: &ReworkOptions,
    on_dry_run_match: &mut impl FnMut(&Row),
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let limit = options.limit.unwrap_or(usize::MAX) as u64;
    let pause = mode.pause();
    while let Some((row, message)) = source.next().await? {
        summary.examined += 1;
        options.progress.inc(1);
        let selected = options.filter.matches(&row) && summary.matched < limit;
        summary.matched += u64::from(selected);
        let Some((sink, auditor)) = target else {
            if selected {
                on_dry_run_match(&row);
            }
            source.keep(message).await?;
            continue;
        };
        if !selected {
            summary.kept += u64::from(source.keep(message).await?);
            continue;
        }
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        sink.act(message).await?;
        summary.acted += 1;
        auditor.message(&row, mode.message_event()).await?;
    }
    Ok(())
}

/// A replay's copy: to the message's original exchange and routing key (from the failure
/// headers), else the configured request exchange and routing key, with the replay properties.
pub(super) fn replay_copy(original: &BasicProperties, settings: &Settings) -> Forward {
    let table = original.headers().as_ref();
    let exchange = string(table, headers::ORIGINAL_EXCHANGE).unwrap_or(&settings.amqp.exchange);
    let routing_key =
        string(table, headers::ORIGINAL_ROUTING_KEY).unwrap_or(&settings.amqp.routing_key);
    Forward {
        exchange: exchange.to_owned(),
        routing_key: routing_key.to_owned(),
        properties: headers::replay_properties(original, chrono::Utc::now()),
    }
}

impl Source for Walk<'_> {
    type Message = Delivery;

    async fn next(&mut self) -> anyhow::Result<Option<(Row, Delivery)>> {
        Ok(self
            .take_next()
            .await?
            .map(|(position, delivery)| (Row::of(position, &delivery, false), delivery)))
    }

    async fn keep(&mut self, delivery: Delivery) -> anyhow::Result<bool> {
        self.queue().carry_out(&delivery, Action::Keep).await?;
        Ok(true)
    }
}

/// Acts on messages taken from the queue: every one taken is carried out before the next.
struct QueueSink<'a> {
    queue: &'a DeadLetterQueue,
    settings: &'a Settings,
    mode: Rework,
}

impl Sink<Delivery> for QueueSink<'_> {
    async fn act(&self, delivery: Delivery) -> anyhow::Result<()> {
        let action = match self.mode {
            Rework::Replay { .. } => {
                Action::Forward(Box::new(replay_copy(&delivery.properties, self.settings)))
            }
            Rework::Delete => Action::Drop,
        };
        self.queue.carry_out(&delivery, action).await
    }
}
