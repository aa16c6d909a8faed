//! Test helpers: a small HTTP server serving fixed exposition bodies, a Db
//! in a tempdir, and readers for what landed in it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::{Labels, Matcher};
use tokio::net::TcpListener;

pub const PROM_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the server answers on one path.
#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub gzip: bool,
    pub delay: Duration,
}

impl Route {
    pub fn text(body: &str) -> Route {
        Route {
            status: 200,
            content_type: PROM_TEXT.into(),
            body: body.as_bytes().to_vec(),
            gzip: false,
            delay: Duration::ZERO,
        }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path_and_query: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Route>,
    seen: Vec<Seen>,
}

/// An HTTP/1.1 server on 127.0.0.1 with an OS-chosen port. Stops when
/// dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    pub fn set(&self, path: &str, route: Route) {
        self.state.lock().routes.insert(path.to_string(), route);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().seen.clone()
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

async fn handle(
    st: &Mutex<ServerState>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let route = {
        let mut s = st.lock();
        s.seen.push(Seen {
            path_and_query: pq,
            headers,
        });
        s.routes.get(&path).cloned()
    };
    let Some(r) = route else {
        return Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap();
    };
    if !r.delay.is_zero() {
        tokio::time::sleep(r.delay).await;
    }
    let mut b = Response::builder()
        .status(r.status)
        .header("Content-Type", r.content_type.as_str());
    let body = if r.gzip {
        b = b.header("Content-Encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&r.body).unwrap();
        enc.finish().unwrap()
    } else {
        r.body
    };
    b.body(Full::new(Bytes::from(body))).unwrap()
}

/// A fresh Db in a tempdir (the dir lives as long as the returned guard).
pub fn open_db() -> (Arc<Db>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
    (Arc::new(db), dir)
}

/// Every series named `name`, with its samples.
pub fn series(db: &Db, name: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
    db.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let samples = s.samples(i64::MIN, i64::MAX).unwrap();
            (s.labels, samples)
        })
        .collect()
}

/// The samples of the one series named `name` whose labels include `with`.
pub fn samples(db: &Db, name: &str, with: &[(&str, &str)]) -> Vec<(i64, f64)> {
    let all: Vec<_> = series(db, name)
        .into_iter()
        .filter(|(l, _)| with.iter().all(|(k, v)| l.get(k) == Some(*v)))
        .collect();
    assert!(
        all.len() <= 1,
        "several series match {name} {with:?}: {all:?}"
    );
    all.into_iter().next().map(|(_, s)| s).unwrap_or_default()
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Polls `f` until it returns `Some`, failing after `secs` seconds.
pub async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
