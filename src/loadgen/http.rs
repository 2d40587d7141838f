//! `loadgen --via http`: the same requests through the HTTP ingress, as MOSIP's registration
//! processor sends them (one POST each, HTTP/1.1 keep-alive, `--concurrency` at once), timed
//! from send to answer.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, stream};

use super::request_body;

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// The ingress's POST route, e.g. `http://127.0.0.1:8093/preregistration/v1/sync/consumedPreRegIds`.
    pub url: String,
    /// Bearer token (unset under `ingress.auth = "none"`).
    pub token: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// One request's fate: when it was sent, when its answer came, and whether that answer was the
/// worker's success reply.
pub struct Sent {
    pub sent: Instant,
    pub answered: Instant,
    pub ok: bool,
}

impl Sent {
    pub fn latency(&self) -> Duration {
        self.answered.saturating_duration_since(self.sent)
    }
}

/// POSTs one request per batch of `prids` (`batch` each), paced by `rate` (requests per
/// second, from `started`) if given; returns each request's fate, by index. A request that
/// fails to get an answer fails the run.
pub async fn send_all(
    target: &HttpTarget,
    prids: &[String],
    batch: usize,
    rate: Option<f64>,
    started: Instant,
) -> anyhow::Result<Vec<Sent>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(target.concurrency)
        .http1_only()
        .build()
        .context("building the HTTP client")?;
    let interval = rate.map(|rate| Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let requests = prids.chunks(batch).enumerate().map(|(index, batch)| {
        let (client, body) = (client.clone(), request_body(batch));
        async move {
            if let Some(interval) = interval {
                tokio::time::sleep_until((started + interval * index as u32).into()).await;
            }
            let mut request = client
                .post(&target.url)
                .header("content-type", "application/json")
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .body(body);
            if let Some(token) = &target.token {
                request = request.bearer_auth(token);
            }
            let sent = Instant::now();
            let response = request.send().await.context("sending a request")?;
            let status = response.status();
            let answer = response.bytes().await.context("reading an answer")?;
            let answer: serde_json::Value =
                serde_json::from_slice(&answer).context("an answer that is not JSON")?;
            Ok::<_, anyhow::Error>(Sent {
                sent,
                answered: Instant::now(),
                ok: status.is_success()
                    && answer["errors"].is_null()
                    && answer["response"]["status"].is_null(),
            })
        }
    });
    stream::iter(requests)
        .buffered(target.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
