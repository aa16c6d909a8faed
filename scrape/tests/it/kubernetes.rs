//! `kubernetes_sd_configs` against a fake Kubernetes API server.
//!
//! No real API server can run on this machine (no Docker, no kind, no
//! kube-apiserver binary), so [`FakeApi`], a plain HTTP/1.1 server on
//! 127.0.0.1, serves recorded responses shaped exactly like the real API's:
//! the `PodList`, `NodeList`, ... JSON documents and newline-delimited watch
//! event lines under `tests/fixtures/kubernetes/`. A list path answers with
//! its queued responses (the last one repeats); a watch request (`watch=1`)
//! waits until the test queues a watch response for that path, so the test
//! decides when events arrive. Every request is recorded with its query and
//! headers.
//!
//! The expected label sets are written here from Prometheus 2.42's rules
//! (`discovery/kubernetes/*.go`), not produced by strata's code.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use strata_scrape::config::{Config, KubernetesSdConfig};
use strata_scrape::discovery::TargetGroup;
use strata_scrape::kubernetes::client::InCluster;
use strata_scrape::kubernetes::KubernetesDiscovery;
use strata_scrape::ScrapeManager;
use tokio::net::TcpListener;

use crate::util::*;

// --- the fake API server ---------------------------------------------------------

#[derive(Default)]
struct ApiState {
    lists: HashMap<String, VecDeque<(u16, String)>>,
    watches: HashMap<String, VecDeque<(u16, String)>>,
    seen: Vec<Seen>,
}

struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<ApiState>>,
    task: tokio::task::JoinHandle<()>,
    https: bool,
}

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/tls")
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tls_dir();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    async fn start() -> FakeApi {
        Self::start_with(None).await
    }

    /// Over HTTPS with the test certificates (server name
    /// "prom.internal"), client certificates from the test CA required.
    async fn start_tls() -> FakeApi {
        Self::start_with(Some(tls_acceptor())).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ApiState::default()));
        let st = state.clone();
        let https = tls.is_some();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(api_handle(&st, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acc) => {
                            if let Ok(s) = acc.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        FakeApi {
            addr,
            state,
            task,
            https,
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Queues a list response for `path`; the last one queued repeats.
    fn list(&self, path: &str, status: u16, body: impl Into<String>) {
        self.state
            .lock()
            .lists
            .entry(path.into())
            .or_default()
            .push_back((status, body.into()));
    }

    /// Queues a watch response (the whole stream; the server then ends it).
    fn watch(&self, path: &str, status: u16, body: impl Into<String>) {
        self.state
            .lock()
            .watches
            .entry(path.into())
            .or_default()
            .push_back((status, body.into()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().seen.clone()
    }

    /// Requests whose path is `path`, as path and query.
    fn requests(&self, path: &str) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| s.path_and_query)
            .filter(|p| p.split('?').next() == Some(path))
            .collect()
    }

    fn lists_of(&self, path: &str) -> usize {
        self.requests(path)
            .iter()
            .filter(|p| !p.contains("watch=1"))
            .count()
    }

    fn watches_of(&self, path: &str) -> Vec<String> {
        self.requests(path)
            .into_iter()
            .filter(|p| p.contains("watch=1"))
            .collect()
    }
}

async fn api_handle(
    st: &Mutex<ApiState>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let is_watch = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "watch=1");
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    st.lock().seen.push(Seen {
        path_and_query: pq,
        headers,
    });
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if is_watch {
        // Held open until the test queues events (a real watch stays open
        // until its timeout), then sent and ended.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some((s, b)) = st.lock().watches.get_mut(&path).and_then(|q| q.pop_front()) {
                return reply(s, b);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return reply(200, String::new());
    }
    let mut s = st.lock();
    match s.lists.get_mut(&path) {
        Some(q) if !q.is_empty() => {
            let (status, body) = if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q[0].clone()
            };
            reply(status, body)
        }
        _ => reply(
            404,
            format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"the server could not find the requested resource ({path})","reason":"NotFound","code":404}}"#
            ),
        ),
    }
}

// --- helpers ---------------------------------------------------------------------

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubernetes")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sd_config(yaml: &str) -> KubernetesSdConfig {
    let full = format!("scrape_configs:\n- job_name: k\n  kubernetes_sd_configs:\n{yaml}");
    let cfg = Config::load(&full).unwrap_or_else(|e| panic!("{e}\n{full}"));
    cfg.scrape_configs[0].kubernetes_sd_configs[0].clone()
}

/// A role pointed at the fake server, extra YAML appended (indented 4).
fn sd_at(api: &FakeApi, role: &str, extra: &str) -> KubernetesSdConfig {
    sd_config(&format!(
        "  - role: {role}\n    api_server: {}\n{extra}",
        api.url()
    ))
}

type Ls = BTreeMap<String, String>;

/// Each target of each group as (source, all labels incl. `__address__`),
/// target labels over group labels, sorted.
fn flatten(groups: &[TargetGroup]) -> Vec<(String, Ls)> {
    let mut out = Vec::new();
    for g in groups {
        for (i, addr) in g.targets.iter().enumerate() {
            let mut ls = g.labels.clone();
            if let Some(t) = g.target_labels.get(i) {
                ls.extend(t.clone());
            }
            ls.insert("__address__".into(), addr.clone());
            out.push((g.source.clone(), ls));
        }
    }
    out.sort();
    out
}

/// A label set; names without a `__` prefix get `__meta_kubernetes_`.
fn ls(pairs: &[(&str, &str)]) -> Ls {
    pairs
        .iter()
        .map(|(k, v)| {
            let k = if k.starts_with("__") {
                k.to_string()
            } else {
                format!("__meta_kubernetes_{k}")
            };
            (k, v.to_string())
        })
        .collect()
}

fn with(base: &Ls, extra: &[(&str, &str)]) -> Ls {
    let mut l = base.clone();
    l.extend(ls(extra));
    l
}

/// Waits until the discovery's flattened targets equal `want`; fails with
/// the difference after 10s.
async fn expect_targets(d: &KubernetesDiscovery, mut want: Vec<(String, Ls)>) {
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = flatten(&d.groups());
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            for (g, w) in got.iter().zip(want.iter()) {
                if g != w {
                    let extra: Vec<_> =
                        g.1.iter().filter(|(k, v)| w.1.get(*k) != Some(v)).collect();
                    let missing: Vec<_> =
                        w.1.iter().filter(|(k, v)| g.1.get(*k) != Some(v)).collect();
                    panic!(
                        "first difference at {} / {}:\n unexpected {extra:?}\n missing {missing:?}\n(errors: {:?})",
                        g.0, w.0,
                        d.errors()
                    );
                }
            }
            assert_eq!(got, want, "errors: {:?}", d.errors());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The labels Prometheus' `podLabels` gives the web pod of pods.json.
fn web_pod_labels() -> Ls {
    ls(&[
        ("pod_name", "web-7d4b9c-x2x9q"),
        ("pod_ip", "10.1.2.3"),
        ("pod_ready", "true"),
        ("pod_phase", "Running"),
        ("pod_node_name", "node-a"),
        ("pod_host_ip", "192.168.0.11"),
        ("pod_uid", "6f1c2a4e-1b0e-4c55-9a43-2f3d1c0b7a11"),
        ("pod_controller_kind", "ReplicaSet"),
        ("pod_controller_name", "web-7d4b9c"),
        ("pod_label_app_kubernetes_io_name", "web"),
        ("pod_labelpresent_app_kubernetes_io_name", "true"),
        ("pod_label_pod_template_hash", "7d4b9c"),
        ("pod_labelpresent_pod_template_hash", "true"),
        ("pod_annotation_prometheus_io_scrape", "true"),
        ("pod_annotationpresent_prometheus_io_scrape", "true"),
        ("pod_annotation_prometheus_io_port", "8080"),
        ("pod_annotationpresent_prometheus_io_port", "true"),
    ])
}

/// Prometheus' `serviceLabels` of shop/web in services.json.
fn web_service_labels() -> Ls {
    ls(&[
        ("service_name", "web"),
        ("namespace", "shop"),
        ("service_label_app", "web"),
        ("service_labelpresent_app", "true"),
        ("service_annotation_prometheus_io_probe", "true"),
        ("service_annotationpresent_prometheus_io_probe", "true"),
    ])
}

/// The targets of the pod role for pods.json.
fn pod_role_expected() -> Vec<(String, Ls)> {
    let web = with(&web_pod_labels(), &[("namespace", "shop")]);
    let src = "pod/shop/web-7d4b9c-x2x9q".to_string();
    let web_port = |addr: &str, port: &str, name: &str| {
        with(
            &web,
            &[
                ("__address__", addr),
                ("pod_container_name", "web"),
                ("pod_container_id", "containerd://aaa111"),
                ("pod_container_image", "nginx:1.25"),
                ("pod_container_port_number", port),
                ("pod_container_port_name", name),
                ("pod_container_port_protocol", "TCP"),
                ("pod_container_init", "false"),
            ],
        )
    };
    let db = ls(&[
        ("namespace", "data"),
        ("pod_name", "db-0"),
        ("pod_ip", "fd00::5"),
        // No Ready condition.
        ("pod_ready", "unknown"),
        ("pod_phase", "Running"),
        ("pod_node_name", "node-b"),
        ("pod_host_ip", "192.168.0.12"),
        ("pod_uid", "1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
        ("__address__", "[fd00::5]:5432"),
        ("pod_container_name", "db"),
        ("pod_container_id", "containerd://ddd444"),
        ("pod_container_image", "postgres:15"),
        ("pod_container_port_number", "5432"),
        ("pod_container_port_name", ""),
        ("pod_container_port_protocol", "TCP"),
        ("pod_container_init", "false"),
    ]);
    // pending-0 has no pod IP yet: no targets.
    vec![
        (src.clone(), web_port("10.1.2.3:8080", "8080", "http")),
        (src.clone(), web_port("10.1.2.3:9113", "9113", "metrics")),
        (
            src.clone(),
            with(
                &web,
                &[
                    ("__address__", "10.1.2.3"),
                    ("pod_container_name", "sidecar"),
                    ("pod_container_id", "containerd://bbb222"),
                    ("pod_container_image", "busybox:1.36"),
                    ("pod_container_init", "false"),
                ],
            ),
        ),
        (
            src,
            with(
                &web,
                &[
                    ("__address__", "10.1.2.3"),
                    ("pod_container_name", "init-db"),
                    ("pod_container_id", "containerd://ccc333"),
                    ("pod_container_image", "busybox:1.36"),
                    ("pod_container_init", "true"),
                ],
            ),
        ),
        ("pod/data/db-0".into(), db),
    ]
}

// --- roles -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_role_labels() {
    let api = FakeApi::start().await;
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "pod", ""));
    expect_targets(&d, pod_role_expected()).await;
    assert_eq!(d.errors().0, 0, "{:?}", d.errors());
    // Listed cluster-wide, paged, then watched from the list's version.
    let lists = api.requests("/api/v1/pods");
    assert_eq!(lists[0], "/api/v1/pods?limit=500");
    eventually(10, "a watch", || {
        (!api.watches_of("/api/v1/pods").is_empty()).then_some(())
    })
    .await;
    let w = &api.watches_of("/api/v1/pods")[0];
    assert!(w.contains("watch=1"), "{w}");
    assert!(w.contains("resourceVersion=1000"), "{w}");
    assert!(w.contains("allowWatchBookmarks=true"), "{w}");
    assert!(w.contains("timeoutSeconds="), "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_role_labels() {
    let api = FakeApi::start().await;
    api.list("/api/v1/nodes", 200, fixture("nodes.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "node", ""));
    let a = ls(&[
        ("node_name", "node-a"),
        ("node_provider_id", "aws:///eu-west-1a/i-0abc"),
        ("node_label_kubernetes_io_hostname", "node-a"),
        ("node_labelpresent_kubernetes_io_hostname", "true"),
        ("node_label_node_role_kubernetes_io_worker", ""),
        ("node_labelpresent_node_role_kubernetes_io_worker", "true"),
        ("node_annotation_node_alpha_kubernetes_io_ttl", "0"),
        (
            "node_annotationpresent_node_alpha_kubernetes_io_ttl",
            "true",
        ),
        // InternalIP first, and the first address of each type.
        ("__address__", "192.168.0.11:10250"),
        ("node_address_InternalIP", "192.168.0.11"),
        ("node_address_Hostname", "node-a"),
    ]);
    let mut a = a;
    // The node role sets `instance` to the node name.
    a.insert("instance".into(), "node-a".into());
    let mut b = ls(&[
        ("node_name", "node-b"),
        ("node_provider_id", ""),
        // No internal address: ExternalIP comes before Hostname.
        ("__address__", "203.0.113.7:10250"),
        ("node_address_ExternalIP", "203.0.113.7"),
        ("node_address_Hostname", "node-b"),
    ]);
    b.insert("instance".into(), "node-b".into());
    // node-c has no address at all: no group.
    expect_targets(
        &d,
        vec![("node/node-a".into(), a), ("node/node-b".into(), b)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_role_labels() {
    let api = FakeApi::start().await;
    api.list("/api/v1/services", 200, fixture("services.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "service", ""));
    let web = web_service_labels();
    let web_port = |addr: &str, name: &str, num: &str| {
        with(
            &web,
            &[
                ("__address__", addr),
                ("service_port_name", name),
                ("service_port_number", num),
                ("service_port_protocol", "TCP"),
                ("service_type", "ClusterIP"),
                ("service_cluster_ip", "10.96.0.10"),
            ],
        )
    };
    let ext = ls(&[
        ("service_name", "ext"),
        ("namespace", "shop"),
        ("__address__", "ext.shop.svc:5432"),
        ("service_port_name", ""),
        ("service_port_number", "5432"),
        ("service_port_protocol", "TCP"),
        ("service_type", "ExternalName"),
        ("service_external_name", "db.example.com"),
    ]);
    let lb = ls(&[
        ("service_name", "lb"),
        ("namespace", "shop"),
        ("__address__", "lb.shop.svc:443"),
        ("service_port_name", "https"),
        ("service_port_number", "443"),
        ("service_port_protocol", "TCP"),
        ("service_type", "LoadBalancer"),
        ("service_cluster_ip", "10.96.0.20"),
        ("service_loadbalancer_ip", "198.51.100.1"),
    ]);
    expect_targets(
        &d,
        vec![
            (
                "svc/shop/web".into(),
                web_port("web.shop.svc:80", "http", "80"),
            ),
            (
                "svc/shop/web".into(),
                web_port("web.shop.svc:9113", "metrics", "9113"),
            ),
            ("svc/shop/ext".into(), ext),
            ("svc/shop/lb".into(), lb),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_role_labels_with_pod_and_service() {
    let api = FakeApi::start().await;
    api.list("/api/v1/endpoints", 200, fixture("endpoints.json"));
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    api.list("/api/v1/services", 200, fixture("services.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "endpoints", ""));
    let group = with(
        &web_service_labels(),
        &[
            ("endpoints_name", "web"),
            ("endpoints_label_app", "web"),
            ("endpoints_labelpresent_app", "true"),
        ],
    );
    let group_pod = {
        let mut g = group.clone();
        g.extend(web_pod_labels());
        g
    };
    let src = "endpoints/shop/web".to_string();
    let ready = with(
        &group_pod,
        &[
            ("__address__", "10.1.2.3:8080"),
            ("endpoint_port_name", "http"),
            ("endpoint_port_protocol", "TCP"),
            ("endpoint_ready", "true"),
            ("endpoint_address_target_kind", "Pod"),
            ("endpoint_address_target_name", "web-7d4b9c-x2x9q"),
            ("endpoint_node_name", "node-a"),
            ("pod_container_name", "web"),
            ("pod_container_image", "nginx:1.25"),
            ("pod_container_port_name", "http"),
            ("pod_container_port_number", "8080"),
            ("pod_container_port_protocol", "TCP"),
        ],
    );
    // The pod it names is unknown: no pod labels.
    let not_ready = with(
        &group,
        &[
            ("__address__", "10.1.2.4:8080"),
            ("endpoint_port_name", "http"),
            ("endpoint_port_protocol", "TCP"),
            ("endpoint_ready", "false"),
            ("endpoint_address_target_kind", "Pod"),
            ("endpoint_address_target_name", "web-gone"),
            ("endpoint_hostname", "web-1"),
        ],
    );
    // The web pod's metrics port is no endpoint port: its own target.
    let extra_port = with(
        &group_pod,
        &[
            ("__address__", "10.1.2.3:9113"),
            ("pod_container_name", "web"),
            ("pod_container_image", "nginx:1.25"),
            ("pod_container_port_name", "metrics"),
            ("pod_container_port_number", "9113"),
            ("pod_container_port_protocol", "TCP"),
        ],
    );
    expect_targets(
        &d,
        vec![
            (src.clone(), ready),
            (src.clone(), not_ready),
            (src, extra_port),
        ],
    )
    .await;
}

/// Until pods are listed, an endpoints discovery has no groups at all:
/// never endpoints targets without their pod labels (which would start and
/// then replace targets whose relabeling uses pod labels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_wait_for_all_informers() {
    let api = FakeApi::start().await;
    api.list("/api/v1/endpoints", 200, fixture("endpoints.json"));
    api.list(
        "/api/v1/pods",
        500,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcdserver: request timed out","code":500}"#,
    );
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    api.list("/api/v1/services", 200, fixture("services.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "endpoints", ""));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut empty_seen = 0;
    let full = loop {
        let got = flatten(&d.groups());
        if got.is_empty() {
            assert!(!d.synced());
            empty_seen += 1;
        } else {
            break got;
        }
        assert!(Instant::now() < deadline, "no groups: {:?}", d.errors());
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The pods list failed once, so there was a wait, and the first groups
    // seen are the complete ones.
    assert!(empty_seen > 0);
    assert_eq!(d.errors().0, 1, "{:?}", d.errors());
    assert_eq!(full.len(), 3);
    assert!(full
        .iter()
        .filter(
            |(_, l)| l.get("__meta_kubernetes_endpoint_address_target_name")
                == Some(&"web-7d4b9c-x2x9q".to_string())
        )
        .all(|(_, l)| l.contains_key("__meta_kubernetes_pod_uid")));
    assert!(d.synced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslice_role_labels() {
    let api = FakeApi::start().await;
    api.list(
        "/apis/discovery.k8s.io/v1/endpointslices",
        200,
        fixture("endpointslices.json"),
    );
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    api.list("/api/v1/services", 200, fixture("services.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "endpointslice", ""));
    let group = with(
        &web_service_labels(),
        &[
            ("endpointslice_name", "web-abcde"),
            ("endpointslice_address_type", "IPv4"),
        ],
    );
    let group_pod = {
        let mut g = group.clone();
        g.extend(web_pod_labels());
        g
    };
    let src = "endpointslice/shop/web-abcde".to_string();
    let port = [
        ("endpointslice_port_name", "http"),
        ("endpointslice_port_protocol", "TCP"),
        ("endpointslice_port", "8080"),
        ("endpointslice_port_app_protocol", "http"),
    ];
    let mut ready = with(&group_pod, &port);
    ready.extend(ls(&[
        ("__address__", "10.1.2.3:8080"),
        ("endpointslice_endpoint_conditions_ready", "true"),
        ("endpointslice_endpoint_conditions_serving", "true"),
        ("endpointslice_endpoint_conditions_terminating", "false"),
        ("endpointslice_address_target_kind", "Pod"),
        ("endpointslice_address_target_name", "web-7d4b9c-x2x9q"),
        ("pod_container_name", "web"),
        ("pod_container_image", "nginx:1.25"),
        ("pod_container_port_name", "http"),
        ("pod_container_port_number", "8080"),
        ("pod_container_port_protocol", "TCP"),
    ]));
    let mut other = with(&group, &port);
    other.extend(ls(&[
        ("__address__", "10.1.2.9:8080"),
        ("endpointslice_endpoint_conditions_ready", "false"),
        ("endpointslice_endpoint_hostname", "web-x"),
        (
            "endpointslice_endpoint_topology_kubernetes_io_hostname",
            "node-b",
        ),
        (
            "endpointslice_endpoint_topology_present_kubernetes_io_hostname",
            "true",
        ),
    ]));
    let extra_port = with(
        &group_pod,
        &[
            ("__address__", "10.1.2.3:9113"),
            ("pod_container_name", "web"),
            ("pod_container_image", "nginx:1.25"),
            ("pod_container_port_name", "metrics"),
            ("pod_container_port_number", "9113"),
            ("pod_container_port_protocol", "TCP"),
        ],
    );
    expect_targets(
        &d,
        vec![
            (src.clone(), ready),
            (src.clone(), other),
            (src, extra_port),
        ],
    )
    .await;
}

// --- list + watch ----------------------------------------------------------------------

fn addresses(d: &KubernetesDiscovery) -> Vec<String> {
    let mut a: Vec<String> = flatten(&d.groups())
        .into_iter()
        .map(|(_, l)| l["__address__"].clone())
        .collect();
    a.sort();
    a
}

async fn expect_addresses(d: &KubernetesDiscovery, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = addresses(d);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "addresses {got:?}, want {want:?} (errors: {:?})",
            d.errors()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WEB_ADDRS: [&str; 5] = [
    "10.1.2.3",
    "10.1.2.3",
    "10.1.2.3:8080",
    "10.1.2.3:9113",
    "[fd00::5]:5432",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_update_targets() {
    let api = FakeApi::start().await;
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "pod", ""));
    expect_addresses(&d, &WEB_ADDRS).await;

    // ADDED (pending, already with an IP), MODIFIED (running), BOOKMARK.
    api.watch("/api/v1/pods", 200, fixture("pods-watch-1.jsonl"));
    let mut want: Vec<&str> = WEB_ADDRS.to_vec();
    want.insert(4, "10.1.2.50:9000");
    expect_addresses(&d, &want).await;
    let api0 = eventually(10, "api-0 running", || {
        flatten(&d.groups())
            .into_iter()
            .find(|(s, l)| s == "pod/shop/api-0" && l["__meta_kubernetes_pod_phase"] == "Running")
    })
    .await;
    assert_eq!(api0.1["__meta_kubernetes_pod_ready"], "true");
    assert_eq!(
        api0.1["__meta_kubernetes_pod_container_id"],
        "containerd://eee555"
    );

    // The server ended that watch; the next one resumes from the bookmark.
    eventually(10, "second watch", || {
        (api.watches_of("/api/v1/pods").len() >= 2).then_some(())
    })
    .await;
    let w = api.watches_of("/api/v1/pods");
    assert!(w[0].contains("resourceVersion=1000"), "{w:?}");
    assert!(w[1].contains("resourceVersion=1010"), "{w:?}");

    // DELETED removes the web pod's targets.
    api.watch("/api/v1/pods", 200, fixture("pods-watch-2.jsonl"));
    expect_addresses(&d, &["10.1.2.50:9000", "[fd00::5]:5432"]).await;
    // No relist was needed for any of this.
    assert_eq!(api.lists_of("/api/v1/pods"), 1);
    assert_eq!(d.errors().0, 0, "{:?}", d.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_relists() {
    let api = FakeApi::start().await;
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    api.list("/api/v1/pods", 200, fixture("pods-after-relist.json"));
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "pod", ""));
    expect_addresses(&d, &WEB_ADDRS).await;

    // A 410 status on the watch request: relist, and the relisted state
    // replaces the old one (pods gone meanwhile disappear).
    api.watch("/api/v1/pods", 410, fixture("status-410.json"));
    expect_addresses(&d, &["10.1.3.7:9000"]).await;
    assert_eq!(api.lists_of("/api/v1/pods"), 2);
    eventually(10, "watch after relist", || {
        api.watches_of("/api/v1/pods")
            .iter()
            .any(|w| w.contains("resourceVersion=1500"))
            .then_some(())
    })
    .await;

    // An ERROR event with code 410 inside a watch stream: relist too.
    api.watch("/api/v1/pods", 200, fixture("watch-error-410.jsonl"));
    expect_addresses(&d, &WEB_ADDRS).await;
    assert_eq!(api.lists_of("/api/v1/pods"), 3);
    // Expiry is routine, not an error.
    assert_eq!(d.errors().0, 0, "{:?}", d.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_is_an_error_and_retried() {
    let api = FakeApi::start().await;
    // A truncated list, then a list whose item has a wrong type, then good.
    api.list(
        "/api/v1/pods",
        200,
        r#"{"kind":"PodList","items":[{"metadata":"#,
    );
    api.list(
        "/api/v1/pods",
        200,
        r#"{"kind":"PodList","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":7}}]}"#,
    );
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "pod", ""));
    expect_addresses(&d, &WEB_ADDRS).await;
    let (n, last) = d.errors();
    assert_eq!(n, 2, "{last:?}");
    let last = last.unwrap();
    assert!(last.contains("listing pods in all namespaces"), "{last}");
    assert!(last.contains("decoding"), "{last}");

    // Garbage in a watch stream: an error, the watch restarts from the
    // last good version, and later events still apply.
    api.watch(
        "/api/v1/pods",
        200,
        "{\"type\":\"ADDED\",\"object\":{\nnot json at all\n",
    );
    eventually(10, "watch error", || (d.errors().0 >= 3).then_some(())).await;
    let last = d.errors().1.unwrap();
    assert!(
        last.contains("watching pods") && last.contains("decoding"),
        "{last}"
    );
    api.watch("/api/v1/pods", 200, fixture("pods-watch-2.jsonl"));
    expect_addresses(&d, &["[fd00::5]:5432"]).await;
    let w = api.watches_of("/api/v1/pods");
    assert!(
        w.len() >= 2 && w[1].contains("resourceVersion=1000"),
        "{w:?}"
    );
    // An error status with a Status body keeps its message.
    assert_eq!(api.lists_of("/api/v1/pods"), 3);
}

/// A watch line longer than the limit (16 MiB) is refused, not buffered
/// without end; the watch restarts and later events apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_watch_line_is_refused() {
    let api = FakeApi::start().await;
    api.list("/api/v1/pods", 200, fixture("pods.json"));
    let d = KubernetesDiscovery::start(sd_at(&api, "pod", ""));
    expect_addresses(&d, &WEB_ADDRS).await;
    let huge = format!(
        "{{\"type\":\"ADDED\",\"object\":{{\"metadata\":{{\"name\":\"x\",\"annotations\":{{\"a\":\"{}\"}}}}}}}}\n",
        "x".repeat(17 << 20)
    );
    api.watch("/api/v1/pods", 200, huge);
    let err = eventually(20, "limit error", || d.errors().1).await;
    assert!(err.contains("longer than 16777216 bytes"), "{err}");
    api.watch("/api/v1/pods", 200, fixture("pods-watch-2.jsonl"));
    expect_addresses(&d, &["[fd00::5]:5432"]).await;
    assert_eq!(api.lists_of("/api/v1/pods"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_status_is_reported() {
    let api = FakeApi::start().await;
    api.list(
        "/api/v1/pods",
        403,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:monitoring:default\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#,
    );
    let d = KubernetesDiscovery::start(sd_at(&api, "pod", ""));
    let last = eventually(10, "an error", || d.errors().1).await;
    assert!(last.contains("403"), "{last}");
    assert!(last.contains("cannot list resource"), "{last}");
    assert!(d.groups().is_empty());
}

// --- namespaces, selectors, auth ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_selectors_hit_the_right_urls() {
    let api = FakeApi::start().await;
    for ns in ["shop", "data"] {
        for kind in ["endpoints", "pods", "services"] {
            let path = format!("/api/v1/namespaces/{ns}/{kind}");
            api.list(
                &path,
                200,
                r#"{"kind":"List","metadata":{"resourceVersion":"7"},"items":[]}"#,
            );
        }
    }
    let d = KubernetesDiscovery::start(sd_at(
        &api,
        "endpoints",
        "    namespaces:\n      names: [shop, data]\n    selectors:\n    - role: pod\n      label: app=web,tier!=cache\n    - role: endpoints\n      field: metadata.name=web\n    authorization:\n      credentials: s3cret\n",
    ));
    let paths = [
        "/api/v1/namespaces/shop/endpoints",
        "/api/v1/namespaces/shop/pods",
        "/api/v1/namespaces/shop/services",
        "/api/v1/namespaces/data/endpoints",
        "/api/v1/namespaces/data/pods",
        "/api/v1/namespaces/data/services",
    ];
    eventually(10, "six lists and watches", || {
        paths
            .iter()
            .all(|p| api.lists_of(p) == 1 && api.watches_of(p).len() == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        api.requests("/api/v1/namespaces/shop/pods")[0],
        "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb%2Ctier%21%3Dcache&limit=500"
    );
    assert_eq!(
        api.requests("/api/v1/namespaces/data/endpoints")[0],
        "/api/v1/namespaces/data/endpoints?fieldSelector=metadata.name%3Dweb&limit=500"
    );
    assert!(api.watches_of("/api/v1/namespaces/data/endpoints")[0]
        .starts_with("/api/v1/namespaces/data/endpoints?fieldSelector=metadata.name%3Dweb&watch=1&resourceVersion=7&allowWatchBookmarks=true"));
    assert_eq!(
        api.requests("/api/v1/namespaces/shop/services")[0],
        "/api/v1/namespaces/shop/services?limit=500"
    );
    // Nothing cluster-wide, and the job's credentials on every request.
    let seen = api.seen();
    assert!(seen
        .iter()
        .all(|s| s.path_and_query.starts_with("/api/v1/namespaces/")));
    assert!(seen
        .iter()
        .all(|s| s.headers.get("authorization").map(String::as_str) == Some("Bearer s3cret")));
    assert_eq!(d.errors().0, 0, "{:?}", d.errors());
}

fn service_account_dir(token: &str, ns: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    std::fs::write(dir.path().join("namespace"), ns).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_service_account_token_and_own_namespace() {
    let api = FakeApi::start().await;
    api.list(
        "/api/v1/namespaces/monitoring/pods",
        200,
        fixture("pods.json"),
    );
    let sa = service_account_dir("eyJhbGciOiJSUzI1NiJ9.token-1\n", "monitoring\n");
    let cfg = sd_config("  - role: pod\n    namespaces:\n      own_namespace: true\n");
    let d = KubernetesDiscovery::start_with(
        cfg,
        Some(InCluster {
            url: api.url(),
            dir: sa.path().to_path_buf(),
        }),
    );
    expect_addresses(&d, &WEB_ADDRS).await;
    let first = &api.seen()[0];
    assert_eq!(
        first.path_and_query,
        "/api/v1/namespaces/monitoring/pods?limit=500"
    );
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some("Bearer eyJhbGciOiJSUzI1NiJ9.token-1")
    );
    // The token file is re-read per request: a rotated token is used by the
    // next watch.
    eventually(10, "first watch", || {
        (!api
            .watches_of("/api/v1/namespaces/monitoring/pods")
            .is_empty())
        .then_some(())
    })
    .await;
    std::fs::write(sa.path().join("token"), "token-2").unwrap();
    api.watch("/api/v1/namespaces/monitoring/pods", 200, "");
    eventually(10, "watch with the new token", || {
        api.seen()
            .iter()
            .any(|s| s.headers.get("authorization").map(String::as_str) == Some("Bearer token-2"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_without_environment_is_a_clear_error() {
    // This test process has no KUBERNETES_SERVICE_HOST (checked, so the
    // test means what it says).
    assert!(std::env::var("KUBERNETES_SERVICE_HOST").is_err());
    let d = KubernetesDiscovery::start(sd_config("  - role: pod\n"));
    let (n, last) = d.errors();
    assert_eq!(n, 1);
    assert!(last.unwrap().contains("KUBERNETES_SERVICE_HOST"));
    assert!(d.groups().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_is_honoured() {
    let api = FakeApi::start().await;
    api.list(
        "/api/v1/namespaces/shop/services",
        200,
        fixture("services.json"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token.txt"), "from-token-file\n").unwrap();
    let kc = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: other\n  cluster:\n    server: http://127.0.0.1:1\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: prod\n  context:\n    cluster: other\n    user: admin\n- name: dev\n  context:\n    cluster: fake\n    user: dev-user\n    namespace: ignored\nusers:\n- name: admin\n  user:\n    token: wrong\n- name: dev-user\n  user:\n    tokenFile: token.txt\npreferences: {{}}\n",
        api.url()
    );
    let kc_path = dir.path().join("kubeconfig");
    std::fs::write(&kc_path, kc).unwrap();
    let cfg = sd_config(&format!(
        "  - role: service\n    kubeconfig_file: {}\n    namespaces:\n      names: [shop]\n",
        kc_path.display()
    ));
    let d = KubernetesDiscovery::start(cfg);
    expect_addresses(
        &d,
        &[
            "ext.shop.svc:5432",
            "lb.shop.svc:443",
            "web.shop.svc:80",
            "web.shop.svc:9113",
        ],
    )
    .await;
    let first = &api.seen()[0];
    assert_eq!(
        first.path_and_query,
        "/api/v1/namespaces/shop/services?limit=500"
    );
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some("Bearer from-token-file")
    );
}

/// A kubeconfig with inline CA and client certificate data (base64),
/// `tls-server-name`, and basic auth, against the HTTPS fake server that
/// requires a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_tls_and_client_certificate() {
    let api = FakeApi::start_tls().await;
    api.list("/api/v1/nodes", 200, fixture("nodes.json"));
    let b64 = |f: &str| base64(&std::fs::read(tls_dir().join(f)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let kc = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n    tls-server-name: prom.internal\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n    username: alice\n    password: pw\n",
        api.url(),
        b64("ca.pem"),
        b64("client.pem"),
        b64("client.key"),
    );
    let kc_path = dir.path().join("config");
    std::fs::write(&kc_path, kc).unwrap();
    let d = KubernetesDiscovery::start(sd_config(&format!(
        "  - role: node\n    kubeconfig_file: {}\n",
        kc_path.display()
    )));
    expect_addresses(&d, &["192.168.0.11:10250", "203.0.113.7:10250"]).await;
    let first = &api.seen()[0];
    // alice:pw
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some("Basic YWxpY2U6cHc=")
    );

    // Without the client certificate the server refuses the handshake: an
    // error, no targets.
    let kc2 = format!(
        "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority: {}\n    tls-server-name: prom.internal\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n",
        api.url(),
        tls_dir().join("ca.pem").display()
    );
    std::fs::write(&kc_path, kc2).unwrap();
    let d2 = KubernetesDiscovery::start(sd_config(&format!(
        "  - role: node\n    kubeconfig_file: {}\n",
        kc_path.display()
    )));
    let err = eventually(10, "TLS error", || d2.errors().1).await;
    assert!(err.contains("listing nodes"), "{err}");
    assert!(d2.groups().is_empty());
}

/// `api_server` with the SD config's own `tls_config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_with_tls_config() {
    let api = FakeApi::start_tls().await;
    api.list("/api/v1/nodes", 200, fixture("nodes.json"));
    let dir = tls_dir();
    let d = KubernetesDiscovery::start(sd_config(&format!(
        "  - role: node\n    api_server: {}\n    bearer_token: abc\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n      server_name: prom.internal\n",
        api.url(),
        dir.join("ca.pem").display(),
        dir.join("client.pem").display(),
        dir.join("client.key").display(),
    )));
    expect_addresses(&d, &["192.168.0.11:10250", "203.0.113.7:10250"]).await;
    assert_eq!(
        api.seen()[0]
            .headers
            .get("authorization")
            .map(String::as_str),
        Some("Bearer abc")
    );
}

/// Standard base64 with padding (kubeconfig `*-data`), for the test.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kubeconfig_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let kc_path = dir.path().join("kubeconfig");
    std::fs::write(
        &kc_path,
        "current-context: nope\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .unwrap();
    let cfg = sd_config(&format!(
        "  - role: pod\n    kubeconfig_file: {}\n",
        kc_path.display()
    ));
    let d = KubernetesDiscovery::start(cfg);
    let last = d.errors().1.unwrap();
    assert!(last.contains("context \"nope\" not found"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_are_followed() {
    let api = FakeApi::start().await;
    api.list(
        "/api/v1/services",
        200,
        r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"40","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDAsInN0YXJ0Ijoid2ViXHUwMDAwIn0"},"items":[{"metadata":{"name":"a","namespace":"x","resourceVersion":"1"},"spec":{"type":"ClusterIP","clusterIP":"10.0.0.1","ports":[{"port":1,"protocol":"TCP"}]}}]}"#,
    );
    api.list(
        "/api/v1/services",
        200,
        r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"40"},"items":[{"metadata":{"name":"b","namespace":"x","resourceVersion":"2"},"spec":{"type":"ClusterIP","clusterIP":"10.0.0.2","ports":[{"port":2,"protocol":"TCP"}]}}]}"#,
    );
    let d = KubernetesDiscovery::start(sd_at(&api, "service", ""));
    expect_addresses(&d, &["a.x.svc:1", "b.x.svc:2"]).await;
    let r = api.requests("/api/v1/services");
    assert_eq!(r[0], "/api/v1/services?limit=500");
    assert_eq!(
        r[1],
        "/api/v1/services?limit=500&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDAsInN0YXJ0Ijoid2ViXHUwMDAwIn0"
    );
}

/// `attach_metadata: {node: true}` adds the node's name and labels to pod
/// groups (Prometheus' `addNodeLabels`), from a cluster-wide node watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_role_attaches_node_metadata() {
    let api = FakeApi::start().await;
    api.list("/api/v1/namespaces/shop/pods", 200, fixture("pods.json"));
    api.list("/api/v1/nodes", 200, fixture("nodes.json"));
    let d = KubernetesDiscovery::start(sd_at(
        &api,
        "pod",
        "    namespaces: {names: [shop]}\n    attach_metadata: {node: true}\n",
    ));
    let node_a = ls(&[
        ("node_name", "node-a"),
        ("node_label_kubernetes_io_hostname", "node-a"),
        ("node_labelpresent_kubernetes_io_hostname", "true"),
        ("node_label_node_role_kubernetes_io_worker", ""),
        ("node_labelpresent_node_role_kubernetes_io_worker", "true"),
    ]);
    // The fixture also holds a pod of namespace data; the fake server
    // returns it on the shop URL, and it is attached to node-b, which has no
    // labels.
    let want: Vec<(String, Ls)> = pod_role_expected()
        .into_iter()
        .map(|(src, mut l)| {
            if src.starts_with("pod/shop/") {
                l.extend(node_a.clone());
            } else {
                l.extend(ls(&[("node_name", "node-b")]));
            }
            (src, l)
        })
        .collect();
    expect_targets(&d, want).await;
}

/// Re-applying a config keeps an unchanged Kubernetes discovery (no new
/// list); changing it starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_discovery() {
    let api = FakeApi::start().await;
    api.list("/api/v1/services", 200, fixture("services.json"));
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db);
    let cfg = |interval: &str, role: &str| {
        Config::load(&format!(
            "scrape_configs:\n- job_name: s\n  scrape_interval: {interval}\n  kubernetes_sd_configs:\n  - role: {role}\n    api_server: {}\n",
            api.url()
        ))
        .unwrap()
    };
    m.apply_config(cfg("1m", "service")).await.unwrap();
    eventually(10, "four targets", || {
        (m.targets().active_targets.len() == 4).then_some(())
    })
    .await;
    m.apply_config(cfg("2m", "service")).await.unwrap();
    assert_eq!(m.targets().active_targets.len(), 4);
    assert_eq!(m.targets().active_targets[0].scrape_interval, "2m");
    assert_eq!(api.lists_of("/api/v1/services"), 1);
    // A different role: a new discovery, services are no longer targets.
    api.list("/api/v1/nodes", 200, fixture("nodes.json"));
    m.apply_config(cfg("2m", "node")).await.unwrap();
    eventually(10, "node targets", || {
        let t = m.targets().active_targets;
        (t.len() == 2
            && t.iter().all(|t| {
                t.labels.contains_key("instance")
                    && t.discovered_labels
                        .contains_key("__meta_kubernetes_node_name")
            }))
        .then_some(())
    })
    .await;
    m.stop().await;
}

/// Two jobs with the same `kubernetes_sd_configs` entry share one
/// discovery: one list and one watch, targets in both jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_configs_share_a_discovery() {
    let api = FakeApi::start().await;
    api.list("/api/v1/services", 200, fixture("services.json"));
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db);
    let job = |name: &str| {
        format!(
            "- job_name: {name}\n  scrape_interval: 1m\n  kubernetes_sd_configs:\n  - role: service\n    api_server: {}\n",
            api.url()
        )
    };
    let cfg = Config::load(&format!("scrape_configs:\n{}{}", job("a"), job("b"))).unwrap();
    m.apply_config(cfg).await.unwrap();
    eventually(10, "targets in both jobs", || {
        let t = m.targets().active_targets;
        let a = t.iter().filter(|t| t.scrape_pool == "a").count();
        let b = t.iter().filter(|t| t.scrape_pool == "b").count();
        (a == 4 && b == 4).then_some(())
    })
    .await;
    eventually(10, "a watch", || {
        (!api.watches_of("/api/v1/services").is_empty()).then_some(())
    })
    .await;
    assert_eq!(api.lists_of("/api/v1/services"), 1);
    assert_eq!(api.watches_of("/api/v1/services").len(), 1);
    m.stop().await;
}

// --- end to end --------------------------------------------------------------------

/// A pod whose IP and port are a real local exporter; the job keeps pods
/// annotated `prometheus.io/scrape: "true"` and maps pod labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_manager_scrapes_discovered_pods() {
    let exporter = TestServer::start().await;
    exporter.set("/metrics", Route::text("k8s_demo_total 7\n"));
    let port = exporter.addr.port();
    let api = FakeApi::start().await;
    let pod = |name: &str, scrape: &str, port: u16| {
        format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"shop","uid":"u-{name}","resourceVersion":"5","labels":{{"app":"demo"}},"annotations":{{"prometheus.io/scrape":"{scrape}"}}}},"spec":{{"containers":[{{"name":"demo","image":"demo:1","ports":[{{"name":"metrics","containerPort":{port},"protocol":"TCP"}}]}}],"nodeName":"node-a"}},"status":{{"phase":"Running","podIP":"127.0.0.1","hostIP":"127.0.0.1","conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
        )
    };
    api.list(
        "/api/v1/pods",
        200,
        format!(
            r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"10"}},"items":[{},{}]}}"#,
            pod("demo-1", "true", port),
            pod("ignored-1", "false", 1)
        ),
    );
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db.clone());
    let yaml = format!(
        r#"scrape_configs:
- job_name: kubernetes-pods
  scrape_interval: 100ms
  scrape_timeout: 100ms
  kubernetes_sd_configs:
  - role: pod
    api_server: {}
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
    action: keep
    regex: "true"
  - action: labelmap
    regex: __meta_kubernetes_pod_label_(.+)
  - source_labels: [__meta_kubernetes_namespace]
    target_label: namespace
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
"#,
        api.url()
    );
    m.apply_config(Config::load(&yaml).unwrap()).await.unwrap();
    let inst = format!("127.0.0.1:{port}");
    eventually(15, "samples from the discovered pod", || {
        let s = samples(
            &db,
            "k8s_demo_total",
            &[
                ("instance", &inst),
                ("pod", "demo-1"),
                ("namespace", "shop"),
                ("app", "demo"),
            ],
        );
        (s.len() >= 2).then_some(())
    })
    .await;
    assert!(
        samples(&db, "up", &[("job", "kubernetes-pods"), ("pod", "demo-1")])
            .iter()
            .all(|s| s.1 == 1.0)
    );
    let snap = m.targets();
    assert_eq!(snap.active_targets.len(), 1);
    let t = &snap.active_targets[0];
    assert_eq!(t.scrape_url, format!("http://{inst}/metrics"));
    assert_eq!(t.labels["pod"], "demo-1");
    assert_eq!(
        t.discovered_labels["__meta_kubernetes_pod_container_port_name"],
        "metrics"
    );
    // The other pod was dropped by relabeling and shows as dropped.
    assert_eq!(snap.dropped_targets.len(), 1);
    assert_eq!(
        snap.dropped_targets[0].discovered_labels["__meta_kubernetes_pod_name"],
        "ignored-1"
    );

    // The pod goes away: its target stops (with a stale marker on `up`).
    api.watch(
        "/api/v1/pods",
        200,
        format!(
            "{{\"type\":\"DELETED\",\"object\":{}}}\n",
            pod("demo-1", "true", port)
        ),
    );
    // The targets view keeps showing the job while it re-syncs, so once
    // the target is gone from it, its loop has stopped.
    eventually(10, "target removed", || {
        m.targets().active_targets.is_empty().then_some(())
    })
    .await;
    let up = samples(&db, "up", &[("job", "kubernetes-pods"), ("pod", "demo-1")]);
    assert!(strata_scrape::is_stale_nan(up.last().unwrap().1));
    m.stop().await;
}

/// The project's own deploy/cluster1/prometheus.yml, its two Kubernetes
/// jobs unchanged but for a 100ms interval, running in-cluster (service
/// account dir and API URL given to the manager) against the fake server:
/// an annotated Service's endpoint and an annotated pod, both a real local
/// exporter, end up scraped with the labels the relabeling builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_prometheus_yml_kubernetes_jobs() {
    let exporter = TestServer::start().await;
    exporter.set("/custom", Route::text("deploy_demo 1\n"));
    exporter.set("/metrics", Route::text("deploy_pod_demo 2\n"));
    let port = exporter.addr.port();
    let api = FakeApi::start().await;
    let sa = service_account_dir("sa-token", "monitoring");

    let pod = format!(
        r#"{{"metadata":{{"name":"exp-0","namespace":"monitoring","uid":"u1","resourceVersion":"3","labels":{{"app":"exp"}},"annotations":{{"prometheus.io/scrape":"true","prometheus.io/port":"{port}"}}}},"spec":{{"nodeName":"node-a","containers":[{{"name":"exp","image":"exp:1","ports":[{{"name":"web","containerPort":1,"protocol":"TCP"}}]}}]}},"status":{{"phase":"Running","podIP":"127.0.0.1","hostIP":"127.0.0.1","conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    );
    let pending = r#"{"metadata":{"name":"exp-1","namespace":"monitoring","uid":"u2","resourceVersion":"4","annotations":{"prometheus.io/scrape":"true"}},"spec":{"nodeName":"node-a","containers":[{"name":"exp","image":"exp:1","ports":[{"containerPort":2,"protocol":"TCP"}]}]},"status":{"phase":"Pending","podIP":"127.0.0.2"}}"#;
    api.list(
        "/api/v1/pods",
        200,
        format!(
            r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"10"}},"items":[{pod},{pending}]}}"#
        ),
    );
    api.list(
        "/api/v1/services",
        200,
        format!(
            r#"{{"kind":"ServiceList","apiVersion":"v1","metadata":{{"resourceVersion":"10"}},"items":[{{"metadata":{{"name":"exp","namespace":"monitoring","resourceVersion":"5","labels":{{"app.kubernetes.io/name":"exporter"}},"annotations":{{"prometheus.io/scrape":"true","prometheus.io/path":"/custom","prometheus.io/port":"{port}"}}}},"spec":{{"type":"ClusterIP","clusterIP":"10.96.0.50","ports":[{{"name":"web","port":80,"protocol":"TCP"}}]}}}}]}}"#
        ),
    );
    api.list(
        "/api/v1/endpoints",
        200,
        r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"exp","namespace":"monitoring","resourceVersion":"6"},"subsets":[{"addresses":[{"ip":"127.0.0.1","nodeName":"node-a","targetRef":{"kind":"Pod","namespace":"monitoring","name":"exp-0"}}],"ports":[{"name":"web","port":80,"protocol":"TCP"}]}]}]}"#,
    );

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cluster1/prometheus.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cfg = Config::load(&text).unwrap();
    cfg.scrape_configs.retain(|j| {
        j.job_name == "kubernetes-service-endpoints" || j.job_name == "kubernetes-pods"
    });
    assert_eq!(cfg.scrape_configs.len(), 2);
    for j in &mut cfg.scrape_configs {
        j.scrape_interval = Duration::from_millis(100);
        j.scrape_timeout = Duration::from_millis(100);
    }
    let (db, _dir) = open_db();
    let m = ScrapeManager::new(db.clone());
    m.set_kubernetes_in_cluster(Some(InCluster {
        url: api.url(),
        dir: sa.path().to_path_buf(),
    }));
    m.apply_config(cfg).await.unwrap();

    let inst = format!("127.0.0.1:{port}");
    eventually(15, "the service endpoint scraped", || {
        let s = samples(
            &db,
            "deploy_demo",
            &[
                ("job", "kubernetes-service-endpoints"),
                ("instance", &inst),
                ("kubernetes_namespace", "monitoring"),
                ("kubernetes_service", "exp"),
                ("app_kubernetes_io_name", "exporter"),
                ("node", "node-a"),
            ],
        );
        (!s.is_empty()).then_some(())
    })
    .await;
    eventually(15, "the pod scraped", || {
        let s = samples(
            &db,
            "deploy_pod_demo",
            &[
                ("job", "kubernetes-pods"),
                ("instance", &inst),
                ("kubernetes_namespace", "monitoring"),
                ("kubernetes_pod_name", "exp-0"),
                ("app", "exp"),
                ("node", "node-a"),
            ],
        );
        (!s.is_empty()).then_some(())
    })
    .await;
    // The pending pod is dropped by the deploy config's phase rule.
    let snap = m.targets();
    let pods: Vec<_> = snap
        .active_targets
        .iter()
        .filter(|t| t.scrape_pool == "kubernetes-pods")
        .collect();
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert!(snap
        .dropped_targets
        .iter()
        .any(|d| d.discovered_labels["__meta_kubernetes_pod_name"] == "exp-1"));
    // Every API request carried the service account token.
    assert!(api
        .seen()
        .iter()
        .all(|s| s.headers.get("authorization").map(String::as_str) == Some("Bearer sa-token")));
    m.stop().await;
}
