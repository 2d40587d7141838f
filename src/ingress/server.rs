//! The ingress's listener: HTTP/1.1 (keep-alive) and HTTP/2 on one port, optionally TLS with
//! client certificates; a client that does not finish its TLS handshake or its headers within
//! `header_read_timeout` is disconnected. At shutdown it stops accepting, lets every request in
//! progress be answered (within the grace period), then returns.

use std::time::Duration;

use axum::{Router, body::Body};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::routes::PeerCertificate;

pub(super) struct Server {
    pub(super) listener: TcpListener,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) header_read_timeout: Duration,
    pub(super) app: Router,
}

impl Server {
    pub(super) async fn serve(self, shutdown: CancellationToken, grace: Duration) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else { continue };
            #[allow(
                clippy::let_underscore_must_use,
                reason = "without TCP_NODELAY the connection still works, only slower"
            )]
            let _ = tcp.set_nodelay(true);
            let connection = Connection {
                builder: builder.clone(),
                watcher: graceful.watcher(),
                app: self.app.clone(),
            };
            match self.tls.clone() {
                None => {
                    tokio::spawn(connection.serve(TokioIo::new(tcp), PeerCertificate(None)));
                }
                Some(acceptor) => {
                    let handshake_timeout = self.header_read_timeout;
                    tokio::spawn(async move {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
                        else {
                            return;
                        };
                        let peer = PeerCertificate(
                            stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|cert| common_name(cert)),
                        );
                        connection.serve(TokioIo::new(stream), peer).await;
                    });
                }
            }
        }
        drop(self.listener);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; ingress connections still open are closed");
        }
    }
}

/// One accepted connection, served until it closes or the graceful shutdown ends it.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    app: Router,
}

impl Connection {
    async fn serve<I>(self, io: TokioIo<I>, peer: PeerCertificate)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = self.builder.serve_connection(io, service).into_owned();
        if let Err(err) = self.watcher.watch(connection).await {
            tracing::debug!(error = %err, "ingress connection ended with an error");
        }
    }
}

/// The subject common name of a client certificate (the caller's `app_id` under `mtls`).
fn common_name(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}
