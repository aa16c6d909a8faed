//! Integration tests of the API router: requests are driven through
//! `tower::ServiceExt::oneshot` (no sockets), except in `promtool`, which runs
//! the real promtool against a server on 127.0.0.1.

mod api;
mod promtool;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use strata_promapi::{ApiError, ApiOptions, Backend, BuildInfo, RequestContext};
use strata_promql::{MemStorage, Queryable, SelectHints, SelectResult, StorageError};
use strata_tsdb::labels::{Labels, Matcher};
use tower::ServiceExt;

/// The first sample time of the fixture, in ms.
pub const T0: i64 = 1_700_000_000_000;

/// `MemStorage` plus a few magic metric names: `slow` sleeps, `warn` adds a
/// storage warning, `broken` fails. Counts selects running at once.
pub struct TestStorage {
    mem: MemStorage,
    running: AtomicUsize,
    pub max_running: AtomicUsize,
    pub slow_for: Duration,
}

impl Queryable for TestStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let name = matchers
            .iter()
            .find(|m| m.name == "__name__")
            .map(|m| m.value.as_str())
            .unwrap_or("");
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if name == "slow" {
            std::thread::sleep(self.slow_for);
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        if name == "broken" {
            return Err(StorageError("disk on fire".into()));
        }
        let mut r = self.mem.select(matchers, hints)?;
        if name == "warn" {
            r.warnings.push("test warning".into());
        }
        Ok(r)
    }
}

pub struct TestBackend {
    pub storage: Arc<TestStorage>,
    pub ready: AtomicBool,
}

impl Backend for TestBackend {
    fn queryable(&self, _ctx: &RequestContext) -> Result<Arc<dyn Queryable>, ApiError> {
        Ok(self.storage.clone())
    }

    fn build_info(&self) -> BuildInfo {
        BuildInfo {
            version: "0.1.0".into(),
            revision: "abc123".into(),
            branch: "main".into(),
            build_user: "ci".into(),
            build_date: "20240101-00:00:00".into(),
            go_version: "rustc 1.88".into(),
        }
    }

    fn flags(&self) -> std::collections::BTreeMap<String, String> {
        [("query.timeout", "2m"), ("log.level", "info")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config_yaml(&self) -> String {
        "global:\n  scrape_interval: 15s\n".into()
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// The fixture: two `up` series every 15 s, special values, odd strings.
pub fn fixture() -> MemStorage {
    let mut m = MemStorage::new();
    let a = l(&[("__name__", "up"), ("job", "prom"), ("instance", "a:9090")]);
    let b = l(&[("__name__", "up"), ("job", "node"), ("instance", "b:9100")]);
    for (i, (va, vb)) in [(1.0, 1.0), (1.0, 1.0), (0.0, 1.0)].into_iter().enumerate() {
        let t = T0 + 15_000 * i as i64;
        m.add_sample(a.clone(), t, va);
        m.add_sample(b.clone(), t, vb);
    }
    for (kind, v) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
        ("tiny", 1e-7),
        ("big", 1e21),
    ] {
        m.add_sample(l(&[("__name__", "weird"), ("kind", kind)]), T0, v);
    }
    m.add_sample(l(&[("__name__", "html"), ("v", "<a&b>\"q\"")]), T0, 1.5);
    m.add_sample(l(&[("__name__", "warn")]), T0, 7.0);
    m.add_sample(l(&[("__name__", "slow")]), T0, 3.0);
    m.add_sample(l(&[("__name__", "broken")]), T0, 3.0);
    m
}

pub fn backend(slow_for: Duration) -> Arc<TestBackend> {
    Arc::new(TestBackend {
        storage: Arc::new(TestStorage {
            mem: fixture(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            slow_for,
        }),
        ready: AtomicBool::new(true),
    })
}

pub fn app_with(opts: ApiOptions) -> (Router, Arc<TestBackend>) {
    let b = backend(Duration::from_millis(300));
    (strata_promapi::router(b.clone(), opts), b)
}

pub fn app() -> Router {
    app_with(ApiOptions::default()).0
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

pub fn post_form(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// Percent-encodes a parameter value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GET and assert 200 with exactly `expected` as the body.
pub async fn expect_json(app: &Router, uri: &str, expected: &str) {
    let r = send(app, get(uri)).await;
    assert_eq!(r.text(), expected, "GET {uri}");
    assert_eq!(r.status, StatusCode::OK, "GET {uri}");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
}

/// GET and assert an error envelope.
pub async fn expect_error(app: &Router, uri: &str, code: u16, typ: &str, msg: &str) {
    let r = send(app, get(uri)).await;
    let expected = serde_json::json!({"status": "error", "errorType": typ, "error": msg});
    let got: serde_json::Value = serde_json::from_slice(&r.body).expect("json error body");
    assert_eq!(got, expected, "GET {uri}");
    assert_eq!(r.status.as_u16(), code, "GET {uri}");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
}
