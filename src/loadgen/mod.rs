//! `prereg-sync loadgen`: the registration processor's stand-in. Publishes valid requests with
//! confirms (optionally after seeding matching applications), waits for every reply on a
//! private queue, and reports throughput and reply latency.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};

use crate::{
    amqp,
    config::Settings,
    message::{format_timestamp, prid},
    progress::Progress,
    storage,
};

/// Confirms are awaited in windows of this many publishes: pipelined, memory bounded.
const CONFIRM_WINDOW: usize = 500;
/// Applications are seeded this many rows per statement.
const SEED_CHUNK: usize = 10_000;

#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    pub requests: usize,
    pub batch: usize,
    pub seed: bool,
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Counts replies as they arrive.
    pub progress: Progress,
}

#[derive(Debug)]
pub struct LoadgenReport {
    pub requests: usize,
    pub prids: usize,
    pub acks: usize,
    pub errors: usize,
    /// From the first publish to the last reply.
    pub elapsed: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
}

impl LoadgenReport {
    fn elapsed_secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The figures of the text line, for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let secs = self.elapsed_secs();
        serde_json::json!({
            "requests": self.requests,
            "prids": self.prids,
            "acks": self.acks,
            "errors": self.errors,
            "elapsed_seconds": secs,
            "messages_per_second": self.requests as f64 / secs,
            "prids_per_second": self.prids as f64 / secs,
            "latency_p50_ms": self.latency_p50.as_secs_f64() * 1e3,
            "latency_p99_ms": self.latency_p99.as_secs_f64() * 1e3,
        })
    }
}

impl fmt::Display for LoadgenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed_secs();
        write!(
            f,
            "requests={} prids={} acks={} errors={} elapsed={:.2}s messages/s={:.0} prids/s={:.0} latency_p50={:.1}ms latency_p99={:.1}ms",
            self.requests,
            self.prids,
            self.acks,
            self.errors,
            secs,
            self.requests as f64 / secs,
            self.prids as f64 / secs,
            self.latency_p50.as_secs_f64() * 1e3,
            self.latency_p99.as_secs_f64() * 1e3,
        )
    }
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

/// Inserts an `applicant_demographic` row per PRID so the known-application check passes.
pub async fn seed_applications(settings: &Settings, prids: &[String]) -> anyhow::Result<()> {
    let database = storage::Database::new(&settings.database)?;
    let (client, driver) = database
        .connect(None)
        .await
        .context("connecting to the database")?;
    let statement = client
        .prepare(
            "INSERT INTO prereg.applicant_demographic \
             (prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes) \
             SELECT id, '\\x00'::bytea, 'loadgen', now(), 'Booked', 'eng', 'loadgen', 'loadgen', now() \
             FROM unnest($1::varchar[]) AS id ON CONFLICT DO NOTHING",
        )
        .await
        .context("preparing the seed statement")?;
    for chunk in prids.chunks(SEED_CHUNK) {
        client
            .execute(&statement, &[&chunk])
            .await
            .context("seeding applications")?;
    }
    // Vacuumed and analysed now, so autovacuum does not process the freshly seeded table in the
    // middle of a measurement (it did, in the benchmark's larger scenarios). A role that does
    // not own the table gets a warning from PostgreSQL, not an error.
    client
        .batch_execute("VACUUM ANALYZE prereg.applicant_demographic")
        .await
        .context("analysing the seeded applications")?;
    drop(client);
    let _ = driver.await;
    Ok(())
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

pub async fn run(settings: &Settings, options: &LoadgenOptions) -> anyhow::Result<LoadgenReport> {
    anyhow::ensure!(
        options.requests > 0 && options.batch > 0,
        "--requests and --batch must be positive"
    );
    let prids = generate_prids(settings, options.requests * options.batch);
    if options.seed {
        seed_applications(settings, &prids).await?;
    }
    let connection = amqp::connect(&settings.amqp).await?;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    let reply_queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .context("declaring the reply queue")?;
    let replies = channel
        .basic_consume(
            reply_queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .context("consuming replies")?;

    let started = Instant::now();
    options.progress.set_total(options.requests as u64);
    let collector = tokio::spawn(collect_replies(
        replies,
        options.requests,
        options.timeout,
        options.progress.clone(),
    ));
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
            .with_reply_to(reply_queue.name().clone())
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
    let received = collector.await.context("reply collector")??;
    options.progress.finish();
    let elapsed = received
        .values()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or(started)
        - started;
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter_map(|(index, (at, _))| {
            sent_at
                .get(*index)
                .map(|sent| at.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort_unstable();
    let errors = received.values().filter(|(_, ok)| !ok).count();
    let _ = connection.close(200, "loadgen done".into()).await;
    anyhow::ensure!(
        received.len() == options.requests,
        "only {} of {} replies arrived within {:?}",
        received.len(),
        options.requests,
        options.timeout
    );
    Ok(LoadgenReport {
        requests: options.requests,
        prids: prids.len(),
        acks: received.len() - errors,
        errors,
        elapsed,
        latency_p50: percentile(&latencies, 0.50),
        latency_p99: percentile(&latencies, 0.99),
    })
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

pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
