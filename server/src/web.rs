//! The HTTP surface: the promapi router plus the routes only a server with
//! local storage has — remote write/read, `/federate`, `/metrics`,
//! lifecycle (`/-/reload`, `/-/quit`) and the TSDB admin API.
//!
//! Our routes are matched first; every other path falls through to
//! `strata_promapi::router`, which keeps its own 404s, CORS and readiness
//! gate. A disabled remote-write receiver is simply not routed, so it answers
//! promapi's `404 page not found` like Prometheus.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use strata_promapi::params::{now_ms, parse_time, Params};
use strata_promapi::{parse_match_params, ApiOptions};
use strata_promql::EngineOptions;
use strata_tsdb::labels::Labels;

use crate::backend::TsdbBackend;
use crate::metrics::{escape_label_value, go_float, Exposition};
use crate::{remote, Shared};

type St = State<Arc<Shared>>;

pub(crate) fn engine_options(o: &crate::ServerOptions) -> EngineOptions {
    EngineOptions {
        max_samples: o.max_samples,
        timeout: o.query_timeout,
        lookback_delta: o.lookback_delta.as_millis() as i64,
        ..EngineOptions::default()
    }
}

pub(crate) fn app(shared: Arc<Shared>) -> Router {
    let api_opts = ApiOptions {
        engine: engine_options(&shared.opts),
        query_timeout: shared.opts.query_timeout,
        max_concurrency: shared.opts.max_concurrency,
        ..ApiOptions::default()
    };
    let api = strata_promapi::router(Arc::new(TsdbBackend(shared.clone())), api_opts);

    let mut r = Router::new()
        .route("/api/v1/read", post(read))
        .route("/federate", get(federate))
        .route(
            "/api/v1/targets/metadata",
            get(targets_metadata).post(targets_metadata),
        )
        .route("/metrics", get(metrics))
        .route("/-/reload", post(reload).put(reload))
        .route("/-/quit", post(quit).put(quit))
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(clean_tombstones).put(clean_tombstones),
        );
    if shared.opts.enable_remote_write_receiver {
        r = r.route("/api/v1/write", post(write));
    }
    r.fallback_service(api)
        .layer(middleware::from_fn_with_state(shared.clone(), track))
        .with_state(shared)
}

/// A bounded label value for `prometheus_http_requests_total`.
fn handler_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/metadata",
        "/api/v1/targets",
        "/api/v1/targets/metadata",
        "/api/v1/write",
        "/api/v1/read",
        "/api/v1/status/config",
        "/api/v1/status/flags",
        "/api/v1/status/buildinfo",
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/tsdb",
        "/api/v1/admin/tsdb/snapshot",
        "/api/v1/admin/tsdb/delete_series",
        "/api/v1/admin/tsdb/clean_tombstones",
        "/federate",
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/-/reload",
        "/-/quit",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == path) {
        return k;
    }
    if path.starts_with("/api/v1/label/") {
        return "/api/v1/label/:name/values";
    }
    "other"
}

async fn track(State(shared): St, req: Request, next: Next) -> Response {
    let handler = handler_label(req.uri().path());
    let resp = next.run(req).await;
    shared.metrics.http_request(handler, resp.status().as_u16());
    resp
}

async fn write(State(shared): St, body: Body) -> Response {
    remote::write(shared, body).await
}

async fn read(State(shared): St, body: Body) -> Response {
    remote::read(shared, body).await
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

/// The API's JSON error envelope.
fn api_error(status: StatusCode, typ: &str, msg: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": typ, "error": msg});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn api_success(data: serde_json::Value) -> Response {
    let body = serde_json::json!({"status": "success", "data": data});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn reload(State(shared): St) -> Response {
    if !shared.opts.enable_lifecycle {
        return plain(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    }
    match shared.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
    }
}

async fn quit(State(shared): St) -> Response {
    if !shared.opts.enable_lifecycle {
        return plain(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    }
    shared.quit.send_replace(true);
    plain(StatusCode::OK, "Requesting termination... Goodbye!")
}

/// Parameters from the URL query and, for POST/PUT forms, the body.
async fn params(uri: &Uri, body: Body) -> Params {
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    Params::from_parts((!body.is_empty()).then_some(body.as_ref()), uri.query())
}

async fn federate(State(shared): St, uri: Uri) -> Response {
    let p = Params::from_parts(None, uri.query());
    let opts = engine_options(&shared.opts);
    let sets = match parse_match_params(p.get_all("match[]"), &opts) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let now = now_ms();
    let mint = now - shared.opts.lookback_delta.as_millis() as i64;
    let external = shared.external_labels();
    let db = shared.db.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<String, String> {
        // Latest sample per series, deduplicated over the selectors.
        let mut latest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        for set in &sets {
            for s in db.select(set, mint, now).map_err(|e| e.to_string())? {
                if latest.contains_key(&s.labels) {
                    continue;
                }
                let samples = s.samples(mint, now).map_err(|e| e.to_string())?;
                if let Some(&(t, v)) = samples.last() {
                    if v.to_bits() != STALE_NAN {
                        latest.insert(s.labels, (t, v));
                    }
                }
            }
        }
        let mut by_name: BTreeMap<String, Vec<(Labels, i64, f64)>> = BTreeMap::new();
        for (l, (t, v)) in latest {
            by_name
                .entry(l.metric_name().to_string())
                .or_default()
                .push((l, t, v));
        }
        let mut out = String::new();
        for (name, series) in by_name {
            out.push_str(&format!("# TYPE {name} untyped\n"));
            for (l, t, v) in series {
                out.push_str(&name);
                let mut pairs: Vec<(String, String)> = l
                    .iter()
                    .filter(|x| &*x.name != "__name__")
                    .map(|x| (x.name.to_string(), x.value.to_string()))
                    .collect();
                for e in external.iter() {
                    if l.get(&e.name).is_none() {
                        pairs.push((e.name.to_string(), e.value.to_string()));
                    }
                }
                pairs.sort();
                if !pairs.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in pairs.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(k);
                        out.push_str("=\"");
                        escape_label_value(&mut out, val);
                        out.push('"');
                    }
                    out.push('}');
                }
                out.push_str(&format!(" {} {t}\n", go_float(v)));
            }
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match res {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `/api/v1/targets/metadata` as Prometheus 2.42: `match_target` selects
/// targets by their labels, `metric` one family (then entries carry no
/// `metric` field), `limit` stops adding targets once that many entries
/// are listed. Targets in pool, then label order; families by name.
async fn targets_metadata(State(shared): St, uri: Uri, body: Body) -> Response {
    let p = params(&uri, body).await;
    let limit = match p.get("limit") {
        None | Some("") => -1,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    "limit must be a number",
                )
            }
        },
    };
    let sets = match p.get("match_target") {
        None | Some("") => None,
        Some(v) => match strata_promapi::parse_series_selector(v, &engine_options(&shared.opts)) {
            Ok(s) => Some(s),
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    &format!("invalid parameter \"match_target\": {e}"),
                )
            }
        },
    };
    let metric = p.get("metric").unwrap_or("").to_string();
    let mut targets = shared.scrape.targets_metadata();
    targets.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut out = Vec::new();
    for (_, labels, meta) in targets {
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        if let Some(sets) = &sets {
            let ok = sets.iter().any(|set| {
                set.iter()
                    .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            });
            if !ok {
                continue;
            }
        }
        let target: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string().into()))
            .collect();
        let entry = |family: Option<&str>, m: &strata_scrape::MetricMetadata| {
            let mut o = serde_json::Map::new();
            o.insert("target".into(), target.clone().into());
            if let Some(f) = family {
                o.insert("metric".into(), f.into());
            }
            o.insert("type".into(), m.kind.as_str().into());
            o.insert("help".into(), m.help.clone().into());
            o.insert("unit".into(), m.unit.clone().into());
            serde_json::Value::Object(o)
        };
        if metric.is_empty() {
            let mut fams: Vec<_> = meta.iter().collect();
            fams.sort_by(|a, b| a.0.cmp(b.0));
            out.extend(fams.into_iter().map(|(f, m)| entry(Some(f), m)));
        } else if let Some(m) = meta.get(&metric) {
            out.push(entry(None, m));
        }
    }
    api_success(serde_json::Value::Array(out))
}

/// Prometheus' staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

async fn metrics(State(shared): St) -> Response {
    let sh = shared.clone();
    let text = tokio::task::spawn_blocking(move || render_metrics(&sh))
        .await
        .unwrap_or_default();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn render_metrics(s: &Shared) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut e = Exposition(String::new());
    let head = s.db.head();
    let st = &head.stats;
    e.family("strata_build_info", "gauge", "Build information.");
    e.sample(
        "strata_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    e.single(
        "prometheus_tsdb_head_series",
        "gauge",
        "Total number of series in the head block.",
        head.num_series() as f64,
    );
    e.single(
        "prometheus_tsdb_head_samples_appended_total",
        "counter",
        "Total number of appended samples.",
        st.samples_appended.load(Relaxed) as f64,
    );
    e.single(
        "prometheus_tsdb_head_series_created_total",
        "counter",
        "Total number of series created in the head.",
        st.series_created.load(Relaxed) as f64,
    );
    e.single(
        "prometheus_tsdb_out_of_order_samples_total",
        "counter",
        "Total number of out of order samples ingestion failed attempts.",
        st.out_of_order_samples.load(Relaxed) as f64,
    );
    e.single(
        "prometheus_tsdb_out_of_bound_samples_total",
        "counter",
        "Total number of out of bound samples ingestion failed attempts.",
        st.out_of_bound_samples.load(Relaxed) as f64,
    );
    if !head.is_empty() {
        e.single(
            "prometheus_tsdb_head_min_time",
            "gauge",
            "Minimum time bound of the head block (ms).",
            head.min_time() as f64,
        );
        e.single(
            "prometheus_tsdb_head_max_time",
            "gauge",
            "Maximum timestamp of the head block (ms).",
            head.max_time() as f64,
        );
    }
    let wal_size = head.wal().and_then(|w| w.lock().size().ok()).unwrap_or(0);
    e.single(
        "prometheus_tsdb_wal_storage_size_bytes",
        "gauge",
        "Size of the write log directory.",
        wal_size as f64,
    );
    e.single(
        "prometheus_tsdb_wal_corruptions_total",
        "counter",
        "Total number of WAL corruptions repaired.",
        st.wal_corruptions_repaired.load(Relaxed) as f64,
    );
    let blocks = s.db.blocks();
    e.single(
        "prometheus_tsdb_blocks_loaded",
        "gauge",
        "Number of currently loaded data blocks.",
        blocks.len() as f64,
    );
    e.single(
        "prometheus_tsdb_storage_blocks_bytes",
        "gauge",
        "The number of bytes that are currently used for local storage by all blocks.",
        blocks.iter().map(|b| b.size()).sum::<u64>() as f64,
    );
    e.single(
        "prometheus_tsdb_compactions_total",
        "counter",
        "Total number of compaction runs.",
        s.metrics.compactions.ok.load(Relaxed) as f64,
    );
    e.single(
        "prometheus_tsdb_compactions_failed_total",
        "counter",
        "Total number of compaction runs that failed.",
        s.metrics.compactions.failed.load(Relaxed) as f64,
    );
    e.single(
        "prometheus_config_last_reload_successful",
        "gauge",
        "Whether the last configuration reload attempt was successful.",
        if s.reload_ok.load(Relaxed) { 1.0 } else { 0.0 },
    );
    e.family(
        "strata_config_reloads_total",
        "counter",
        "Configuration reloads by result.",
    );
    e.sample(
        "strata_config_reloads_total",
        &[("result", "success")],
        s.metrics.reloads.ok.load(Relaxed) as f64,
    );
    e.sample(
        "strata_config_reloads_total",
        &[("result", "failure")],
        s.metrics.reloads.failed.load(Relaxed) as f64,
    );
    let targets = s.scrape.targets();
    let mut by_pool: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in &targets.active_targets {
        let health = serde_json::to_value(t.health)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *by_pool.entry((t.scrape_pool.clone(), health)).or_default() += 1;
    }
    e.family(
        "strata_scrape_targets",
        "gauge",
        "Active scrape targets by pool and health.",
    );
    for ((pool, health), n) in by_pool {
        e.sample(
            "strata_scrape_targets",
            &[("scrape_pool", &pool), ("health", &health)],
            n as f64,
        );
    }
    e.family(
        "strata_remote_write_requests_total",
        "counter",
        "Remote write requests received, by result.",
    );
    e.sample(
        "strata_remote_write_requests_total",
        &[("result", "success")],
        s.metrics.remote_write_requests.ok.load(Relaxed) as f64,
    );
    e.sample(
        "strata_remote_write_requests_total",
        &[("result", "failure")],
        s.metrics.remote_write_requests.failed.load(Relaxed) as f64,
    );
    e.single(
        "strata_remote_write_samples_total",
        "counter",
        "Samples appended from remote write.",
        s.metrics.remote_write_samples.load(Relaxed) as f64,
    );
    e.single(
        "strata_remote_write_samples_rejected_total",
        "counter",
        "Remote-written samples rejected (out of order, duplicate, out of bounds, invalid labels).",
        s.metrics.remote_write_rejected.load(Relaxed) as f64,
    );
    e.single(
        "strata_remote_read_queries_total",
        "counter",
        "Remote read queries served.",
        s.metrics.remote_read_queries.load(Relaxed) as f64,
    );
    e.family(
        "strata_tsdb_storeapi_requests_total",
        "counter",
        "StoreAPI, Info and Metadata requests served over gRPC (--grpc-address), by method and result.",
    );
    let grpc = s.metrics.grpc_requests.lock().clone();
    for ((method, ok), n) in grpc {
        let result = if ok { "success" } else { "failure" };
        e.sample(
            "strata_tsdb_storeapi_requests_total",
            &[("method", method), ("result", result)],
            n as f64,
        );
    }
    e.family(
        "prometheus_http_requests_total",
        "counter",
        "Counter of HTTP requests.",
    );
    let reqs = s.metrics.http_requests.lock().clone();
    for ((handler, code), n) in reqs {
        e.sample(
            "prometheus_http_requests_total",
            &[("code", &code.to_string()), ("handler", handler)],
            n as f64,
        );
    }
    e.0
}

const ADMIN_DISABLED: &str = "admin APIs disabled";

async fn snapshot(State(shared): St, uri: Uri, body: Body) -> Response {
    if !shared.opts.enable_admin_api {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            ADMIN_DISABLED,
        );
    }
    let p = params(&uri, body).await;
    let skip_head = match p.get("skip_head") {
        None | Some("") => false,
        Some(v) => match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    &format!("unable to parse boolean 'skip_head' argument: strconv.ParseBool: parsing {v:?}: invalid syntax"),
                )
            }
        },
    };
    let db = shared.db.clone();
    let res = tokio::task::spawn_blocking(move || make_snapshot(&db, skip_head))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match res {
        Ok(name) => api_success(serde_json::json!({ "name": name })),
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("create snapshot: {e}"),
        ),
    }
}

/// `<data>/snapshots/<UTC time>-<random>`: blocks hard-linked (they are
/// immutable; tombstones files are replaced by rename, never edited), the
/// head written as one more block unless skipped. The live data directory
/// is not changed.
fn make_snapshot(db: &strata_tsdb::db::Db, skip_head: bool) -> Result<String, String> {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let stamp = strata_promapi::params::format_rfc3339_nano(now.as_secs() as i64, 0);
    let stamp: String = stamp
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.as_nanos());
    let name = format!("{stamp}Z-{:016x}", h.finish() >> 1);
    let dir = db.dir().join("snapshots").join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for b in db.blocks() {
        let src = b.dir();
        let Some(id) = src.file_name() else { continue };
        link_tree(src, &dir.join(id))?;
    }
    if !skip_head {
        let head = db.head();
        if !head.is_empty() {
            let (mint, maxt) = (head.min_time(), head.max_time());
            let series = head.chunk_series_in(mint, maxt);
            strata_tsdb::block::write_block(
                &dir,
                &series,
                &strata_tsdb::block::WriteOptions {
                    min_time: mint,
                    max_time: maxt + 1,
                    compaction: None,
                    segment_size: None,
                },
            )
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(name)
}

fn link_tree(src: &Path, dst: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    let rd = std::fs::read_dir(src).map_err(|e| format!("{}: {e}", src.display()))?;
    for ent in rd {
        let ent = ent.map_err(|e| format!("{}: {e}", src.display()))?;
        let from = ent.path();
        let to = dst.join(ent.file_name());
        let ft = ent
            .file_type()
            .map_err(|e| format!("{}: {e}", from.display()))?;
        if ft.is_dir() {
            link_tree(&from, &to)?;
        } else {
            std::fs::hard_link(&from, &to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    Ok(())
}

async fn delete_series(State(shared): St, uri: Uri, body: Body) -> Response {
    if !shared.opts.enable_admin_api {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            ADMIN_DISABLED,
        );
    }
    let p = params(&uri, body).await;
    if p.get("match[]").is_none() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "no match[] parameter provided",
        );
    }
    let time = |name: &str, default: i64| -> Result<i64, String> {
        match p.get(name) {
            None | Some("") => Ok(default),
            Some(v) => parse_time(v).map_err(|e| format!("invalid parameter \"{name}\": {e}")),
        }
    };
    let (start, end) = match (time("start", i64::MIN), time("end", i64::MAX)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return api_error(StatusCode::BAD_REQUEST, "bad_data", &e),
    };
    let sets = match parse_match_params(p.get_all("match[]"), &engine_options(&shared.opts)) {
        Ok(s) => s,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_data", &e),
    };
    let db = shared.db.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<usize, String> {
        let mut n = 0;
        for set in &sets {
            n += db.delete(set, start, end).map_err(|e| e.to_string())?;
        }
        Ok(n)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match res {
        Ok(n) => {
            tracing::info!(series = n, start, end, "deleted series");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e),
    }
}

async fn clean_tombstones(State(shared): St) -> Response {
    if !shared.opts.enable_admin_api {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            ADMIN_DISABLED,
        );
    }
    let db = shared.db.clone();
    let res = tokio::task::spawn_blocking(move || db.clean_tombstones())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match res {
        Ok(blocks) => {
            tracing::info!(rewritten = blocks.len(), "cleaned tombstones");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e),
    }
}
