//! The demo exporters: one HTTP server per simulated cluster serving every
//! [`crate::model::Target`] of that cluster under its own path, in
//! Prometheus text format 0.0.4 with HELP and TYPE lines, values computed
//! by the model at the request's wall-clock time.
//!
//! One port per cluster rather than per exporter keeps the demo's port
//! range small; the scrape config sets `__metrics_path__` and `instance`
//! per target, so the TSDB sees one target per exporter as in a real
//! cluster. `GET /` lists the paths.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

use crate::model::Cluster;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn handle(State(cluster): State<Arc<Cluster>>, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/" {
        let mut body = format!(
            "strata demo exporters of {}\n\nScrape paths (job, instance):\n",
            cluster.name
        );
        for t in &cluster.targets {
            body.push_str(&format!("  {}  ({}, {})\n", t.path, t.job, t.instance));
        }
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    }
    match cluster.targets.iter().position(|t| t.path == path) {
        Some(i) => {
            let c = cluster.clone();
            // Rendering a few hundred series is cheap, but it is CPU work:
            // keep it off the async workers anyway.
            match tokio::task::spawn_blocking(move || c.targets[i].render(now_ms())).await {
                Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no exporter at {path}; see /\n"),
        )
            .into_response(),
    }
}

/// The router of one cluster's exporters.
pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new().fallback(handle).with_state(cluster)
}

/// Serves `cluster`'s exporters on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener.tap_io(no_delay), router(cluster))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Sets `TCP_NODELAY` on an accepted connection (via axum's `tap_io`): hyper
/// writes a response's head and body separately, and with Nagle's algorithm
/// the body would wait for the scraper's delayed ACK (about 40 ms on Linux).
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on an exporter connection");
    }
}
