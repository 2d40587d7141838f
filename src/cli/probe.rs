//! `prereg-sync probe`: asks the worker's own HTTP server whether it is ready (or alive), for a
//! container HEALTHCHECK or a compose/Kubernetes exec probe. The image has no HTTP client, and
//! one request needs none: HTTP/1.0 over a plain socket.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A probe that takes longer than this has failed (orchestrators time out too).
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("GET {path} on {addr}: {source}")]
    Io {
        path: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("GET {path} on {addr}: no answer within {TIMEOUT:?}")]
    Timeout { path: String, addr: SocketAddr },
    #[error("GET {path} on {addr}: answered {status}")]
    Status {
        path: String,
        addr: SocketAddr,
        status: String,
    },
}

/// Where to reach a server bound to `listen`: a wildcard address is reached on loopback.
pub(crate) fn target(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    match listen {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    addr
}

/// `GET path` on `addr`; Ok with the status line's code when it is 200.
pub(crate) async fn probe(addr: SocketAddr, path: &str) -> Result<u16, ProbeError> {
    let io = |source| ProbeError::Io {
        path: path.to_owned(),
        addr,
        source,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(io)?;
        Ok(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ProbeError::Timeout {
            path: path.to_owned(),
            addr,
        })??;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    match status.parse::<u16>() {
        Ok(200) => Ok(200),
        _ => Err(ProbeError::Status {
            path: path.to_owned(),
            addr,
            status: status_line,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let probed = |listen: &str| target(listen.parse().unwrap()).to_string();
        assert_eq!(probed("0.0.0.0:9464"), "127.0.0.1:9464");
        assert_eq!(probed("[::]:9464"), "[::1]:9464");
        assert_eq!(probed("10.1.2.3:9464"), "10.1.2.3:9464");
    }

    #[tokio::test]
    async fn only_200_is_healthy() {
        for (answer, healthy) in [
            ("HTTP/1.1 200 OK\r\n\r\nready", true),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready", false),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0; 256];
                let _ = socket.read(&mut buf).await.unwrap();
                socket.write_all(answer.as_bytes()).await.unwrap();
            });
            assert_eq!(probe(addr, "/readyz").await.is_ok(), healthy, "{answer}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = probe(addr, "/healthz").await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("GET /healthz on {addr}: ")),
            "{err}"
        );
    }
}
