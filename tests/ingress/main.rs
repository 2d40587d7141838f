//! The HTTP ingress end to end: a real HTTP client (reqwest) against the ingress, a real worker,
//! broker and database behind it, tokens signed by the test's own key pair. Each test owns a
//! vhost and a database (tests/support).

mod api;
mod auth;
mod faults;
mod openapi;

use std::net::SocketAddr;

use support::*;

/// MOSIP's route, the ingress's default path.
pub const PATH: &str = "/preregistration/v1/sync/consumedPreRegIds";

/// A test environment whose in-process worker also serves the ingress, on a loopback port,
/// trusting `keys`; `extra` variables on top.
pub fn ingress_env(keys: &Keys, extra: &[(&str, &str)]) -> TestEnv {
    let mut env = TestEnv::with_vars(extra);
    for (key, value) in keys.vars("127.0.0.1:0") {
        env.vars.entry(key).or_insert(value);
    }
    env
}

pub fn url(ingress: SocketAddr) -> String {
    format!("http://{ingress}{PATH}")
}

/// One POST of `body` with `token` as bearer (if any) and `headers` (`content-type`
/// `application/json` unless they name one).
pub async fn post(
    client: &reqwest::Client,
    ingress: SocketAddr,
    token: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client.post(url(ingress)).body(body.to_vec());
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the ingress answers")
}

/// The status and the parsed body of an answer.
pub async fn answer(response: reqwest::Response) -> (u16, serde_json::Value, Vec<u8>) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap().to_vec();
    let body = serde_json::from_slice(&bytes).expect("the answer is JSON");
    (status, body, bytes)
}

/// The `errorCode` of an error envelope.
pub fn code(body: &serde_json::Value) -> &str {
    body["errors"][0]["errorCode"].as_str().unwrap_or_default()
}

/// A free loopback port (for a process the test starts, which must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
