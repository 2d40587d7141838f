//! The HTTP ingress: MOSIP's REST call (`POST /preregistration/v1/sync/consumedPreRegIds`)
//! taken as it is and put on the same durable path as an AMQP request (contract, "HTTP
//! ingress").
//!
//! A request flows: the listener (`server.rs`: HTTP/1.1 and HTTP/2, TLS, header timeout) →
//! load shedding past `max_concurrent_requests` → the route (`routes.rs`): the caller
//! authenticated (`auth.rs`), the body read within its limit and time, published persistent,
//! mandatory and confirmed with the transaction ID as `message_id` (`link.rs`) → the worker's
//! reply forwarded byte for byte (200), or `QUEUED` (202) after `reply_timeout`, or 503 when the
//! broker did not take it. Nothing is answered 200 or 202 before the broker confirmed it.

mod auth;
mod dev_token;
mod link;
mod routes;
mod server;
pub(crate) mod settings;
mod verified;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use anyhow::Context;
use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::{MatchedPath, Request, State},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

pub(crate) use self::dev_token::dev_token;
use self::{
    auth::Verifier,
    link::Link,
    routes::{Authenticator, Ingress},
    server::Server,
};
use crate::{
    config::{AmqpSettings, AuthSettings, IngressSettings},
    health::Health,
    telemetry::Metrics,
};

/// The statuses the ingress answers, whose series exist from the start.
const STATUSES: [u16; 10] = [200, 202, 400, 401, 403, 404, 408, 413, 503, 500];

/// What the ingress needs from the rest of the process.
pub(crate) struct Shared {
    pub(crate) amqp: AmqpSettings,
    pub(crate) retry_delays: Vec<std::time::Duration>,
    pub(crate) pool: Pool,
    pub(crate) health: Health,
    pub(crate) metrics: Metrics,
    pub(crate) max_body_bytes: usize,
    /// How long in-flight requests get to be answered after the shutdown signal.
    pub(crate) shutdown_grace: std::time::Duration,
}

/// A bound ingress, not serving yet.
pub(crate) struct BoundIngress {
    addr: SocketAddr,
    server: Server,
    link: Link,
    /// Cancelled with the shutdown signal: the requests waiting for a reply stop waiting.
    stopping: CancellationToken,
    grace: std::time::Duration,
}

impl BoundIngress {
    /// Loads the keys and binds `ingress.listen` (so a port clash fails start-up).
    /// `consumer`: this process runs the worker too (both count for readiness).
    pub(crate) async fn bind(
        settings: &IngressSettings,
        shared: Shared,
        consumer: bool,
    ) -> anyhow::Result<Self> {
        let authenticator = match &settings.auth {
            AuthSettings::Jwt(jwt) => Authenticator::Jwt(Verifier::new(jwt).await?),
            AuthSettings::Mtls => Authenticator::Mtls,
            AuthSettings::None => Authenticator::None,
        };
        let tls = settings
            .tls
            .as_ref()
            .map(|tls| crate::tls::ingress_server_config(tls).map(Arc::new))
            .transpose()?
            .map(tokio_rustls::TlsAcceptor::from);
        shared.health.expect_ingress(consumer);
        let link = Link::new(
            shared.amqp,
            shared.retry_delays,
            shared.health,
            settings.max_reply_waiters,
        );
        let stopping = CancellationToken::new();
        let ingress = Arc::new(Ingress {
            link: link.clone(),
            authenticator,
            pool: shared.pool,
            reply_timeout: settings.reply_timeout,
            body_read_timeout: settings.body_read_timeout,
            max_body_bytes: shared.max_body_bytes,
            stopping: stopping.clone(),
        });
        let lookup_route = format!("{}/{{transaction_id}}", settings.path);
        shared
            .metrics
            .http_routes(&[&settings.path, &lookup_route], &STATUSES);
        let app = Router::new()
            .route(&settings.path, post(routes::submit))
            .route(&lookup_route, get(routes::lookup))
            .with_state(ingress)
            .layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                        routes::overloaded()
                    }))
                    .load_shed()
                    .concurrency_limit(settings.max_concurrent_requests),
            )
            .layer(middleware::from_fn_with_state(shared.metrics, count));
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding ingress.listen {}", settings.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        Ok(BoundIngress {
            addr,
            server: Server {
                listener,
                tls,
                header_read_timeout: settings.header_read_timeout,
                app,
            },
            link,
            stopping,
            grace: shared.shutdown_grace,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`, then answers the requests in progress and closes its broker
    /// connection.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let stop_link = CancellationToken::new();
        let link = tokio::spawn(self.link.run(stop_link.clone()));
        let stopping = self.stopping.clone();
        let signalled = shutdown.clone();
        tokio::spawn(async move {
            signalled.cancelled().await;
            stopping.cancel();
        });
        self.server.serve(shutdown, self.grace).await;
        stop_link.cancel();
        if let Err(err) = link.await {
            tracing::error!(error = %err, "the ingress's broker session task failed");
        }
    }
}

/// Counts each answer by route template (never the transaction ID in the path) and status.
async fn count(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(&route, response.status().as_u16(), started.elapsed());
    response
}
