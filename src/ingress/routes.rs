//! The two routes: `POST <path>` (authenticate, read the body within its limit and time,
//! publish confirmed, wait for the worker's reply) and `GET <path>/{transactionId}` (a stored
//! transaction's reply); and the answers the ingress gives itself, in MOSIP's envelope.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension,
    body::{Body, Bytes},
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use deadpool_postgres::Pool;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{
    auth::{Refusal, Verifier, bearer_token},
    link::{Link, Submission},
};
use crate::message::{Identity, TransactionId, reply::envelope};

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "5";

/// How callers prove who they are.
#[derive(Clone)]
pub(crate) enum Authenticator {
    Jwt(Verifier),
    /// The TLS handshake verified the client certificate; its subject names the caller.
    Mtls,
    /// Loopback only.
    None,
}

/// The subject common name of the client certificate of the request's connection, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerCertificate(pub(crate) Option<String>);

pub(crate) struct Ingress {
    pub(crate) link: Link,
    pub(crate) authenticator: Authenticator,
    pub(crate) pool: Pool,
    pub(crate) reply_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_body_bytes: usize,
    /// Cancelled at shutdown: requests waiting for a reply answer `QUEUED` at once.
    pub(crate) stopping: CancellationToken,
}

pub(crate) type IngressState = Arc<Ingress>;

/// `POST <path>`: MOSIP's request, put on the durable path.
pub(crate) async fn submit(
    State(ingress): State<IngressState>,
    peer: Option<Extension<PeerCertificate>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let app_id = match ingress.caller(&parts.headers, peer).await {
        Ok(app_id) => app_id,
        Err(refusal) => return refused(refusal),
    };
    let body = match read_body(body, ingress.max_body_bytes, ingress.body_read_timeout).await {
        Ok(body) => body,
        Err(status) => return json(status, error_envelope(INVALID_BODY)),
    };
    let message_id = ["idempotency-key", "x-request-id"]
        .iter()
        .find_map(|name| parts.headers.get(*name))
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let submitted = ingress
        .link
        .submit(Submission {
            body: &body,
            message_id: message_id.as_deref(),
            content_type: content_type(&parts.headers).as_deref(),
            app_id: &app_id,
        })
        .await;
    let Ok(pending) = submitted else {
        return unavailable(BROKER_UNAVAILABLE);
    };
    let reply = tokio::select! {
        reply = pending.reply(ingress.reply_timeout) => reply,
        _ = ingress.stopping.cancelled() => None,
    };
    match reply {
        Some(reply) => json(StatusCode::OK, reply),
        None => {
            // The transaction ID the worker will use, as it derives it.
            let identity = Identity::of(message_id.as_deref(), &body);
            let queued = Queued {
                transaction_id: identity.transaction_id.as_str(),
                status: "QUEUED",
            };
            json(
                StatusCode::ACCEPTED,
                envelope(Some(queued), None, Utc::now()),
            )
        }
    }
}

/// `GET <path>/{transactionId}`: the stored reply of a transaction, byte for byte.
pub(crate) async fn lookup(
    State(ingress): State<IngressState>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    Path(transaction_id): Path<String>,
) -> Response {
    if let Err(refusal) = ingress.caller(&headers, peer).await {
        return refused(refusal);
    }
    let Some(transaction_id) = TransactionId::parse(&transaction_id) else {
        return json(StatusCode::NOT_FOUND, error_envelope(NOT_FOUND));
    };
    match stored_reply(&ingress.pool, &transaction_id).await {
        Ok(Some(reply)) => json(StatusCode::OK, reply),
        Ok(None) => json(StatusCode::NOT_FOUND, error_envelope(NOT_FOUND)),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "ingress lookup failed; answered 503");
            unavailable(DATABASE_UNAVAILABLE)
        }
    }
}

/// What the concurrency limit answers past its cap.
pub(crate) fn overloaded() -> Response {
    unavailable(OVERLOADED)
}

impl Ingress {
    /// The caller's `app_id`, or why it is refused.
    async fn caller(
        &self,
        headers: &HeaderMap,
        peer: Option<Extension<PeerCertificate>>,
    ) -> Result<String, Refusal> {
        match &self.authenticator {
            Authenticator::Jwt(verifier) => {
                let token = bearer_token(headers).ok_or(Refusal::Unauthenticated)?;
                verifier.verify(token).await
            }
            Authenticator::Mtls => peer
                .and_then(|Extension(peer)| peer.0)
                .ok_or(Refusal::Unauthenticated),
            Authenticator::None => Ok("unknown".to_owned()),
        }
    }
}

/// The body, at most `limit` bytes (a longer one is refused as soon as it is known to be: from
/// its `Content-Length`, or when the bytes read pass the limit), read within `timeout`.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, StatusCode> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The request's `content_type` as the worker judges it: `application/json` with any
/// parameters (`charset=UTF-8`) is JSON; anything else goes as sent, for the worker to refuse
/// with `PRS_UNSUPPORTED_CONTENT_TYPE`.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let raw = String::from_utf8_lossy(headers.get(header::CONTENT_TYPE)?.as_bytes()).into_owned();
    let essence = raw.split(';').next().unwrap_or_default().trim();
    Some(if essence.eq_ignore_ascii_case("application/json") {
        "application/json".to_owned()
    } else {
        raw
    })
}

async fn stored_reply(
    pool: &Pool,
    transaction_id: &TransactionId,
) -> anyhow::Result<Option<Vec<u8>>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT reply_body FROM prereg.sync_transaction WHERE transaction_id = $1",
            &[&transaction_id.as_str()],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Queued<'a> {
    transaction_id: &'a str,
    status: &'static str,
}

/// The ingress's own error codes and their fixed messages.
type OwnError = (&'static str, &'static str);
const UNAUTHENTICATED: OwnError = ("KER-ATH-401", "Authentication Failed");
const FORBIDDEN: OwnError = ("KER-ATH-403", "Forbidden");
const INVALID_BODY: OwnError = ("PRG_CORE_REQ_015", "Invalid request body");
const NOT_FOUND: OwnError = ("PRS_TRANSACTION_NOT_FOUND", "Transaction not found");
const BROKER_UNAVAILABLE: OwnError = (
    "PRS_BROKER_UNAVAILABLE",
    "The request could not be queued; retry later",
);
const DATABASE_UNAVAILABLE: OwnError = (
    "PRS_DATABASE_UNAVAILABLE",
    "The transaction could not be looked up; retry later",
);
const OVERLOADED: OwnError = (
    "PRS_OVERLOADED",
    "Too many requests in progress; retry later",
);

fn error_envelope(error: OwnError) -> Vec<u8> {
    envelope::<()>(None, Some(error), Utc::now())
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthenticated => {
            let mut response = json(StatusCode::UNAUTHORIZED, error_envelope(UNAUTHENTICATED));
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Forbidden => json(StatusCode::FORBIDDEN, error_envelope(FORBIDDEN)),
    }
}

fn unavailable(error: OwnError) -> Response {
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, error_envelope(error));
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
