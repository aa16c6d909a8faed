//! Integration tests of strata-querier over real gRPC and HTTP servers on
//! 127.0.0.1.
//!
//! - [`TestStore`] is a small StoreAPI + Info server with synthetic data
//!   served by a real tonic server; it is used for the unit-level cases
//!   (pruning, merging, deduplication, partial response, timeouts, limits,
//!   discovery) where the exact data and failures must be controlled.
//! - `cluster.rs` runs real `strata tsdb` servers with real `strata sidecar`s
//!   in-process and queries across them.
//! - `acceptance.rs` runs the shared StoreAPI acceptance suite
//!   (`strata-storetest`) against the querier's own StoreAPI server over two
//!   such clusters.

mod acceptance;
mod cluster;
mod dedup;
mod discovery;
mod dnsserver;
mod fanout;
mod federation;
mod histograms;
mod webconfig;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_proto::grpc::{MessageLimits, ServerOptions, ServerTls};
use strata_proto::thanos::info::info_server::{Info, InfoServer};
use strata_proto::thanos::info::{InfoRequest, InfoResponse, StoreInfo};
use strata_proto::thanos::store_server::{Store, StoreServer};
use strata_proto::thanos::{
    chunk, series_response, AggrChunk, Chunk, Label, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, Series, SeriesRequest, SeriesResponse, ZLabelSet,
};
use strata_querier::{EndpointSpec, Querier, QuerierConfig};
use strata_tsdb::chunkenc::XorChunk;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// One synthetic series: labels without the external ones, and samples.
#[derive(Clone, Debug)]
pub struct TestSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

pub fn ts(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> TestSeries {
    TestSeries {
        labels: labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        samples,
    }
}

/// Samples every `step` ms in `[from, to]` with values `f(t)`.
pub fn samples(from: i64, to: i64, step: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..)
        .map(|i| from + i * step)
        .take_while(|t| *t <= to)
        .map(|t| (t, f(t)))
        .collect()
}

#[derive(Default)]
pub struct StoreState {
    pub ext: Vec<(String, String)>,
    pub series: Vec<TestSeries>,
    pub min_time: i64,
    pub max_time: i64,
    pub delay: Mutex<Duration>,
    pub fail: AtomicBool,
    pub fail_info: AtomicBool,
    pub series_calls: AtomicUsize,
    /// The last Series request received.
    pub last_request: Mutex<Option<SeriesRequest>>,
}

/// A selected series: its labels as answered, and the series.
type Matched<'a> = (Vec<(String, String)>, &'a TestSeries);

/// A StoreAPI server with synthetic data (module docs).
#[derive(Clone)]
pub struct TestStore {
    pub state: Arc<StoreState>,
}

fn encode(samples: &[(i64, f64)]) -> Vec<AggrChunk> {
    samples
        .chunks(120)
        .map(|part| {
            let mut c = XorChunk::new();
            for &(t, v) in part {
                c.append(t, v);
            }
            AggrChunk {
                min_time: part[0].0,
                max_time: part[part.len() - 1].0,
                raw: Some(Chunk {
                    r#type: chunk::Encoding::Xor as i32,
                    data: c.into_bytes().into(),
                    hash: 0,
                }),
                ..Default::default()
            }
        })
        .collect()
}

impl TestStore {
    fn full_labels(&self, s: &TestSeries, without: &[String]) -> Vec<(String, String)> {
        let mut l: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(n, _)| !self.state.ext.iter().any(|(e, _)| e == n))
            .cloned()
            .collect();
        l.extend(self.state.ext.iter().cloned());
        l.retain(|(n, _)| !without.contains(n));
        l.sort();
        l
    }

    fn matching(
        &self,
        ms: &[strata_proto::thanos::LabelMatcher],
        without: &[String],
    ) -> Result<Vec<Matched<'_>>, Status> {
        let ms = strata_querier::proxy::from_pb_matchers(ms)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(self
            .state
            .series
            .iter()
            .map(|s| (self.full_labels(s, &[]), s))
            .filter(|(l, _)| {
                ms.iter().all(|m| {
                    m.matches(
                        l.iter()
                            .find(|(n, _)| *n == m.name)
                            .map_or("", |(_, v)| v.as_str()),
                    )
                })
            })
            .map(|(_, s)| (self.full_labels(s, without), s))
            .collect())
    }

    async fn gate(&self) -> Result<(), Status> {
        let d = *self.state.delay.lock();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        if self.state.fail.load(Ordering::Relaxed) {
            return Err(Status::unavailable("test store is failing"));
        }
        Ok(())
    }
}

type Frames =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<SeriesResponse, Status>>>;

#[tonic::async_trait]
impl Store for TestStore {
    type SeriesStream = Frames;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        self.state.series_calls.fetch_add(1, Ordering::Relaxed);
        let r = request.into_inner();
        *self.state.last_request.lock() = Some(r.clone());
        self.gate().await?;
        let mut out: Vec<Series> = self
            .matching(&r.matchers, &r.without_replica_labels)?
            .into_iter()
            .filter_map(|(labels, s)| {
                let inside: Vec<(i64, f64)> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= r.min_time && *t <= r.max_time)
                    .collect();
                if inside.is_empty() {
                    return None;
                }
                Some(Series {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    chunks: if r.skip_chunks {
                        Vec::new()
                    } else {
                        encode(&inside)
                    },
                })
            })
            .collect();
        out.sort_by(|a, b| {
            let k = |s: &Series| {
                s.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect::<Vec<_>>()
            };
            k(a).cmp(&k(b))
        });
        let frames: Vec<Result<SeriesResponse, Status>> = out
            .into_iter()
            .map(|s| {
                Ok(SeriesResponse {
                    result: Some(series_response::Result::Series(s)),
                })
            })
            .collect();
        Ok(Response::new(tonic::codegen::tokio_stream::iter(frames)))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        self.gate().await?;
        let r = request.into_inner();
        let mut names: Vec<String> = self
            .matching(&r.matchers, &r.without_replica_labels)?
            .into_iter()
            .flat_map(|(l, _)| l.into_iter().map(|(n, _)| n))
            .collect();
        names.sort();
        names.dedup();
        Ok(Response::new(LabelNamesResponse {
            names,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        self.gate().await?;
        let r = request.into_inner();
        let mut values: Vec<String> = self
            .matching(&r.matchers, &r.without_replica_labels)?
            .into_iter()
            .filter_map(|(l, _)| l.into_iter().find(|(n, _)| *n == r.label).map(|(_, v)| v))
            .collect();
        values.sort();
        values.dedup();
        Ok(Response::new(LabelValuesResponse {
            values,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Info for TestStore {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        if self.state.fail_info.load(Ordering::Relaxed) {
            return Err(Status::unavailable("test store Info is failing"));
        }
        let ls = ZLabelSet {
            labels: self
                .state
                .ext
                .iter()
                .map(|(n, v)| Label {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        Ok(Response::new(InfoResponse {
            label_sets: vec![ls],
            component_type: "sidecar".into(),
            store: Some(StoreInfo {
                min_time: self.state.min_time,
                max_time: self.state.max_time,
                supports_without_replica_labels: true,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// A running [`TestStore`].
pub struct RunningStore {
    pub addr: String,
    pub state: Arc<StoreState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningStore {
    /// Stops the server (connections are refused afterwards).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

pub fn ext(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Starts a [`TestStore`] with the given external labels and series; its
/// advertised time range is all time.
pub async fn start_store(ext_labels: &[(&str, &str)], series: Vec<TestSeries>) -> RunningStore {
    start_store_with(ext_labels, series, i64::MIN, i64::MAX, None).await
}

pub async fn start_store_with(
    ext_labels: &[(&str, &str)],
    series: Vec<TestSeries>,
    min_time: i64,
    max_time: i64,
    tls: Option<ServerTls>,
) -> RunningStore {
    let state = Arc::new(StoreState {
        ext: ext(ext_labels),
        series,
        min_time,
        max_time,
        ..Default::default()
    });
    let store = TestStore {
        state: state.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ServerOptions {
        tls,
        ..ServerOptions::default()
    };
    let router = opts
        .builder()
        .unwrap()
        .add_service(StoreServer::new(store.clone()).with_message_limits(opts.max_message_size))
        .add_service(InfoServer::new(store));
    let incoming = opts.incoming(listener);
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx.await;
            })
            .await;
    });
    RunningStore {
        addr,
        state,
        stop: Some(tx),
        task,
    }
}

/// A real `strata tsdb` (in-process) on `data` with the config file `cfg`,
/// and a real `strata sidecar` in front of it. Returns the server, the
/// sidecar's gRPC address, and the sender that stops the sidecar.
pub async fn start_tsdb_with_sidecar(
    data: &std::path::Path,
    cfg: std::path::PathBuf,
) -> (
    strata_server::Server,
    String,
    tokio::sync::watch::Sender<bool>,
) {
    let tsdb = strata_server::Server::start(strata_server::ServerOptions {
        config_file: Some(cfg),
        storage_path: data.to_path_buf(),
        listen_address: "127.0.0.1:0".into(),
        ..strata_server::ServerOptions::default()
    })
    .await
    .expect("strata tsdb starts");
    let mut sc = strata_sidecar::SidecarConfig::new(data);
    sc.prometheus_url = format!("http://{}", tsdb.local_addr());
    sc.max_startup_backoff = Duration::from_millis(200);
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap().to_string();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = strata_sidecar::run_with_listeners(sc, grpc, http, stopped).await {
            panic!("sidecar failed: {e}");
        }
    });
    (tsdb, addr, stop)
}

/// A querier on 127.0.0.1 over `endpoints`, with fast Info polling.
pub async fn start_querier(endpoints: &[&str], f: impl FnOnce(&mut QuerierConfig)) -> TestQuerier {
    let mut cfg = QuerierConfig {
        http_address: "127.0.0.1:0".into(),
        grpc_address: "127.0.0.1:0".into(),
        ..QuerierConfig::default()
    };
    cfg.endpoints.specs = endpoints
        .iter()
        .map(|e| EndpointSpec::parse(e).unwrap())
        .collect();
    cfg.endpoints.info_interval = Duration::from_millis(100);
    cfg.endpoints.info_timeout = Duration::from_secs(2);
    f(&mut cfg);
    let q = Querier::start(cfg).await.expect("querier starts");
    TestQuerier {
        base: format!("http://{}", q.http_addr()),
        q,
        http: reqwest::Client::new(),
    }
}

pub struct TestQuerier {
    pub q: Querier,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestQuerier {
    pub async fn get_json(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, v)
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Waits until `/api/v1/stores` lists `n` stores.
    pub async fn wait_stores(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.get_json("/api/v1/stores").await;
            let count: usize = v["data"]
                .as_object()
                .map(|o| o.values().map(|l| l.as_array().map_or(0, Vec::len)).sum())
                .unwrap_or(0);
            if count == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} stores, have {count}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An instant query; returns the status and the whole response.
    pub async fn query(&self, q: &str, time_s: f64, extra: &str) -> (u16, serde_json::Value) {
        let url = format!("/api/v1/query?query={}&time={time_s}{extra}", urlencode(q));
        self.get_json(&url).await
    }

    pub async fn query_range(
        &self,
        q: &str,
        start_s: f64,
        end_s: f64,
        step_s: f64,
        extra: &str,
    ) -> (u16, serde_json::Value) {
        let url = format!(
            "/api/v1/query_range?query={}&start={start_s}&end={end_s}&step={step_s}{extra}",
            urlencode(q)
        );
        self.get_json(&url).await
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `result` of a query as (labels object, values) pairs.
pub fn result(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The `warnings` of a response.
pub fn warnings(v: &serde_json::Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
