//! What cwtap shows while it runs: an HTTP listener (`agent.listen`,
//! loopback by default) with `/healthz`, `/readyz` and `/metrics`, and the
//! `cwtap health` probe that the container's HEALTHCHECK runs.
//!
//! - [`metrics`]: the Prometheus metrics and the hooks that update them.
//! - [`ready`]: the readiness facts behind `/readyz`.
//!
//! The listener is a bare hyper 1 HTTP/1 server: three fixed GET routes do
//! not need a router.

pub mod firehose;
pub mod metrics;
pub mod ready;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
pub use metrics::metrics;
pub use ready::{group_label, readiness};

/// Why the listener or the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ObsError {
    #[error(
        "cannot listen on {addr} (agent.listen): {source}; pick a free port or set `agent.listen: off`"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        url: String,
        status: u16,
        body: String,
    },
}

/// Binds the listener (separately from [`serve`] so a busy port is
/// reported before anything else starts).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ObsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ObsError::Bind { addr, source })
}

/// Serves `/healthz`, `/readyz` and `/metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics and health listener up");
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                // Out of file descriptors and the like: do not spin.
                if !shutdown.sleep(Duration::from_millis(100)).await {
                    return;
                }
                continue;
            }
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(
                    move |req| async move { Ok::<_, Infallible>(route(req)) },
                );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(error) = r {
                    tracing::debug!(%error, "metrics listener: connection ended with an error");
                },
                _ = shutdown.wait() => {}
            }
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn route(req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness().check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", why.join("\n")),
            ),
        },
        "/metrics" => {
            let mut resp = text(StatusCode::OK, metrics().encode());
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

/// `cwtap health`: GETs `url`; `Ok` with the body on a 200.
pub async fn probe(url: &str) -> Result<String, ObsError> {
    let unreachable = |message: String| ObsError::Unreachable {
        url: url.to_string(),
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(crate::errors::chain(&e)))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if status == 200 {
        Ok(body)
    } else {
        Err(ObsError::Unhealthy {
            url: url.to_string(),
            status,
            body: body.trim().to_string(),
        })
    }
}
