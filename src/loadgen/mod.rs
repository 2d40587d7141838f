//! `prereg-sync loadgen`: the registration processor's stand-in. Publishes valid requests with
//! confirms (optionally after seeding matching applications), waits for every reply on a
//! private queue, and reports throughput and reply latency.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
};

use crate::{
    amqp,
    config::Settings,
    message::{format_timestamp, prid},
    progress::Progress,
};

pub mod http;
mod report;
mod seed;

pub(crate) use report::LoadgenReport;
pub use report::percentile;
pub use seed::seed_applications;
pub(crate) use seed::{database_refusal, remove_seeded_applications};

/// Confirms are awaited in windows of this many publishes: pipelined, memory bounded.
const CONFIRM_WINDOW: usize = 500;

#[derive(Debug, Clone)]
pub(crate) struct LoadgenOptions {
    pub(crate) requests: usize,
    pub(crate) batch: usize,
    pub(crate) seed: bool,
    pub(crate) rate: Option<f64>,
    pub(crate) timeout: Duration,
    /// Counts replies as they arrive.
    pub(crate) progress: Progress,
    /// `--via http`: through the HTTP ingress instead of AMQP.
    pub(crate) http: Option<http::HttpTarget>,
}
/// Unique PRIDs valid under the configured rules, `requests × batch` of them.
pub fn generate_prids(settings: &Settings, count: usize) -> Vec<String> {
    let mut rng = rand::rng();
    let mut seen = HashSet::with_capacity(count);
    let mut prids = Vec::with_capacity(count);
    while prids.len() < count {
        let candidate = prid::generate_valid(&settings.validation.prid_rules, &mut rng);
        if seen.insert(candidate.clone()) {
            prids.push(candidate);
        }
    }
    prids
}

pub fn request_body(prids: &[String]) -> Vec<u8> {
    let body = serde_json::json!({
        "id": "mosip.pre-registration.datasync.store",
        "version": "1.0",
        "requesttime": format_timestamp(Utc::now()),
        "request": {"preRegistrationIds": prids},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

pub(crate) async fn run(
    settings: &Settings,
    options: &LoadgenOptions,
) -> anyhow::Result<LoadgenReport> {
    anyhow::ensure!(
        options.requests > 0 && options.batch > 0,
        "--requests and --batch must be positive"
    );
    let prids = generate_prids(settings, options.requests * options.batch);
    if options.seed {
        seed_applications(settings, &prids).await?;
    }
    if let Some(target) = &options.http {
        return run_http(target, options, &prids).await;
    }
    let connection = amqp::connect(&settings.amqp).await?;
    let (channel, reply_to, replies) = open_channel(&connection).await?;

    let started = Instant::now();
    options.progress.set_total(options.requests as u64);
    let collector = tokio::spawn(collect_replies(
        replies,
        options.requests,
        options.timeout,
        options.progress.clone(),
    ));
    let sent_at = publish_requests(&channel, settings, options, &prids, &reply_to, started).await?;
    let received = collector.await.context("reply collector")??;
    options.progress.finish();
    crate::amqp::close_within(connection.close(200, "loadgen done".into())).await;
    report::summarize(options, prids.len(), started, &sent_at, &received)
}

/// [`run`] through the HTTP ingress: a 202 `QUEUED` or any error counts as an error.
async fn run_http(
    target: &http::HttpTarget,
    options: &LoadgenOptions,
    prids: &[String],
) -> anyhow::Result<LoadgenReport> {
    let started = Instant::now();
    let sent = tokio::time::timeout(
        options.timeout,
        http::send_all(target, prids, options.batch, options.rate, started),
    )
    .await
    .context("the answers did not all arrive within --timeout")??;
    options.progress.finish();
    let sent_at: Vec<Instant> = sent.iter().map(|s| s.sent).collect();
    let received = sent
        .iter()
        .enumerate()
        .map(|(index, s)| (index, (s.answered, s.ok)))
        .collect();
    report::summarize(options, prids.len(), started, &sent_at, &received)
}

/// A channel with publisher confirms, and the consumer of a private reply queue (its name is
/// the requests' `reply_to`).
async fn open_channel(
    connection: &lapin::Connection,
) -> anyhow::Result<(lapin::Channel, ShortString, lapin::Consumer)> {
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    let (reply_to, replies) = amqp::private_reply_queue(&channel)
        .await
        .context("declaring and consuming the reply queue")?;
    Ok((channel, reply_to, replies))
}

/// Publishes one request per batch of `prids` (paced by `--rate`, counted from `started`) and
/// waits for all confirms; returns when each request was sent, by index.
async fn publish_requests(
    channel: &lapin::Channel,
    settings: &Settings,
    options: &LoadgenOptions,
    prids: &[String],
    reply_to: &ShortString,
    started: Instant,
) -> anyhow::Result<Vec<Instant>> {
    let mut sent_at = Vec::with_capacity(options.requests);
    let interval = options
        .rate
        .map(|rate| Duration::from_secs_f64(1.0 / rate.max(0.001)));
    for (index, batch) in prids.chunks(options.batch).enumerate() {
        if let Some(interval) = interval {
            let due = started + interval * index as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let properties = BasicProperties::default()
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_correlation_id(index.to_string().into())
            .with_reply_to(reply_to.clone())
            .with_content_type("application/json".into())
            .with_app_id("loadgen".into())
            .with_delivery_mode(2);
        sent_at.push(Instant::now());
        channel
            .basic_publish(
                settings.amqp.exchange.as_str().into(),
                settings.amqp.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &request_body(batch),
                properties,
            )
            .await
            .context("publishing a request")?;
        if (index + 1) % CONFIRM_WINDOW == 0 {
            channel
                .wait_for_confirms()
                .await
                .context("waiting for confirms")?;
        }
    }
    channel
        .wait_for_confirms()
        .await
        .context("waiting for confirms")?;
    Ok(sent_at)
}

/// Reply arrival time and success per request index (the correlation ID).
async fn collect_replies(
    mut replies: lapin::Consumer,
    expected: usize,
    timeout: Duration,
    progress: Progress,
) -> anyhow::Result<HashMap<usize, (Instant, bool)>> {
    let mut received = HashMap::with_capacity(expected);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while received.len() < expected {
        let delivery = tokio::select! {
            _ = &mut deadline => break,
            delivery = replies.next() => delivery,
        };
        let Some(delivery) = delivery else { break };
        let delivery = delivery.context("receiving a reply")?;
        let properties = &delivery.properties;
        let index = properties
            .correlation_id()
            .as_ref()
            .and_then(|c| c.as_str().parse().ok());
        let ok = properties
            .kind()
            .as_ref()
            .is_some_and(|k| k.as_str() == "ack");
        if let Some(index) = index
            && !received.contains_key(&index)
        {
            received.insert(index, (Instant::now(), ok));
            progress.inc(1);
        }
    }
    Ok(received)
}
