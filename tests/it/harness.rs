//! Shared harness of the end-to-end tests: real processes on free ports.
//!
//! - [`Proc`] is one child process (`strata …`, `prometheus`, `s3s-fs`)
//!   whose stdout and stderr go to a log file in its work directory. It is
//!   killed when dropped, and when it is dropped during a panic (a failed
//!   assertion) the tail of its log is printed, so a failing test shows
//!   what every process said.
//! - [`StrataTsdb`], [`Sidecar`], [`Querier`], [`Prometheus`], [`S3Server`]
//!   wrap a [`Proc`] with the ports and paths a test needs; `start` waits on
//!   readiness (`/-/ready`, or for the querier `/api/v1/stores` listing N
//!   healthy stores) instead of sleeping.
//! - [`Exporter`] is a tiny in-test HTTP exporter (std threads) that a TSDB
//!   scrapes: a counter that grows with wall time and a gauge.
//! - [`Api`] is a blocking HTTP client for the Prometheus API; [`compare`]
//!   checks that two query responses agree (result type, series matched by
//!   label set, timestamps equal, values within [`REL_TOL`]).
//! - [`backfill`] turns generated OpenMetrics text into blocks with
//!   `strata tools tsdb create-blocks-from openmetrics` or promtool.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// How long any process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines printed per process when a test fails.
const TAIL_LINES: usize = 40;
/// Relative tolerance of value comparisons.
pub const REL_TOL: f64 = 1e-5;
/// Absolute tolerance: sums in a different order can leave 1e-17 where
/// the reference has 0 (e.g. `a - a` of a float sum).
pub const ABS_TOL: f64 = 1e-9;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

pub fn now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// One child process with its log file; killed on drop.
pub struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, program: impl AsRef<Path>, args: Vec<String>, log: PathBuf) -> Proc {
        let mut p = Proc {
            name: name.to_string(),
            program: program.as_ref().to_path_buf(),
            args,
            log,
            child: None,
        };
        p.start();
        p
    }

    /// (Re)starts the process with the same arguments, appending to its log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let err = out.try_clone().expect("clone log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics (with the log tail) when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "{} exited with {status}; log tail:\n{}",
                    self.name,
                    self.tail(TAIL_LINES)
                );
            }
        }
    }

    pub fn tail(&self, n: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `ready` until it returns true, failing early when the process
    /// dies and after [`READY_TIMEOUT`].
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.assert_running();
            if ready() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: {what} not reached within {READY_TIMEOUT:?}; log tail:\n{}",
                    self.name,
                    self.tail(TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} (log {}) last {TAIL_LINES} lines -----\n{}\n----- end {} -----",
                self.name,
                self.log.display(),
                self.tail(TAIL_LINES),
                self.name
            );
        }
        self.kill();
    }
}

/// Blocking client of the Prometheus HTTP API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::blocking::Client,
}

/// Status code and parsed JSON body (Value::Null when the body is not JSON).
pub type Resp = (u16, Value);

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    pub fn status(&self, path: &str) -> Option<u16> {
        self.client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    }

    fn parse(r: reqwest::blocking::Response) -> Resp {
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET with query parameters.
    pub fn get(&self, path: &str, params: &[(&str, String)]) -> Resp {
        let url = format!("{}{path}?{}", self.base, encode(params));
        let r = self
            .client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        Self::parse(r)
    }

    /// GET returning the body as text (e.g. `/metrics`).
    pub fn text(&self, path: &str) -> String {
        let url = format!("{}{path}", self.base);
        self.client
            .get(&url)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// POST with an `application/x-www-form-urlencoded` body.
    pub fn post_form(&self, path: &str, params: &[(&str, String)]) -> Resp {
        let url = format!("{}{path}", self.base);
        let r = self
            .client
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encode(params))
            .send()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        Self::parse(r)
    }

    pub fn instant(&self, q: &str, t: f64, extra: &[(&str, String)]) -> Resp {
        let mut p = vec![("query", q.to_string()), ("time", fmt_t(t))];
        p.extend(extra.iter().cloned());
        self.get("/api/v1/query", &p)
    }

    pub fn range(
        &self,
        q: &str,
        start: f64,
        end: f64,
        step: f64,
        extra: &[(&str, String)],
    ) -> Resp {
        let mut p = vec![
            ("query", q.to_string()),
            ("start", fmt_t(start)),
            ("end", fmt_t(end)),
            ("step", fmt_t(step)),
        ];
        p.extend(extra.iter().cloned());
        self.get("/api/v1/query_range", &p)
    }

    /// Waits for `/-/ready` (200) while `proc` runs.
    pub fn wait_ready(&self, proc: &mut Proc) {
        proc.wait_until("/-/ready", || self.status("/-/ready") == Some(200));
    }
}

pub fn encode(params: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Seconds as the API takes them (no exponent, ms precision kept).
pub fn fmt_t(t: f64) -> String {
    format!("{:.3}", t)
}

/// A test's scratch directory; every process gets a subdirectory.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::Builder::new()
                .prefix("strata-e2e-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `strata tsdb` with a prometheus.yml written from `config_yaml`, also
/// serving its own StoreAPI (`--grpc-address`, see [`StrataTsdb::endpoint`]).
pub struct StrataTsdb {
    pub proc: Proc,
    pub port: u16,
    pub grpc_port: u16,
    pub data: PathBuf,
    pub api: Api,
}

impl StrataTsdb {
    /// Starts on a fresh port with data dir `dir/data` (blocks may already
    /// be there) and waits for `/-/ready`.
    pub fn start(name: &str, dir: &Path, config_yaml: &str) -> StrataTsdb {
        Self::start_on(name, dir, config_yaml, free_port())
    }

    pub fn start_on(name: &str, dir: &Path, config_yaml: &str, port: u16) -> StrataTsdb {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("mkdir data");
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config_yaml).expect("write config");
        let grpc_port = free_port();
        let args = vec![
            "tsdb".to_string(),
            format!("--grpc-address=127.0.0.1:{grpc_port}"),
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
            "--storage.tsdb.retention.time=30d".to_string(),
        ];
        let mut proc = Proc::spawn(name, STRATA, args, dir.join(format!("{name}.log")));
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        api.wait_ready(&mut proc);
        StrataTsdb {
            proc,
            port,
            grpc_port,
            data,
            api,
        }
    }

    /// The tsdb's own StoreAPI, for `--endpoint` (no sidecar in between).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Starts again after [`Proc::kill`] on the same port and data (WAL
    /// replay) and waits for `/-/ready`.
    pub fn start_again(&mut self) {
        self.proc.start();
        let api = self.api.clone();
        api.wait_ready(&mut self.proc);
    }
}

/// `strata sidecar` next to a `strata tsdb`.
pub struct Sidecar {
    pub proc: Proc,
    pub grpc_port: u16,
    pub http: Api,
}

impl Sidecar {
    pub fn start(
        name: &str,
        dir: &Path,
        tsdb: &StrataTsdb,
        objstore_yaml: Option<&str>,
    ) -> Sidecar {
        Sidecar::start_for(
            name,
            dir,
            &format!("http://127.0.0.1:{}", tsdb.port),
            &tsdb.data,
            objstore_yaml,
        )
    }

    /// A sidecar for any Prometheus-compatible server (e.g. a real
    /// Prometheus) at `prometheus_url` with its TSDB in `tsdb_path`.
    pub fn start_for(
        name: &str,
        dir: &Path,
        prometheus_url: &str,
        tsdb_path: &Path,
        objstore_yaml: Option<&str>,
    ) -> Sidecar {
        let grpc_port = free_port();
        let http_port = free_port();
        let mut args = vec![
            "sidecar".to_string(),
            format!("--tsdb.path={}", tsdb_path.display()),
            format!("--prometheus.url={prometheus_url}"),
            format!("--grpc-address=127.0.0.1:{grpc_port}"),
            format!("--http-address=127.0.0.1:{http_port}"),
        ];
        if let Some(yaml) = objstore_yaml {
            let f = dir.join(format!("{name}-objstore.yml"));
            std::fs::write(&f, yaml).expect("write objstore.yml");
            args.push(format!("--objstore.config-file={}", f.display()));
            args.push("--shipper.sync-interval=1s".to_string());
        }
        let mut proc = Proc::spawn(name, STRATA, args, dir.join(format!("{name}.log")));
        let http = Api::new(format!("http://127.0.0.1:{http_port}"));
        http.wait_ready(&mut proc);
        Sidecar {
            proc,
            grpc_port,
            http,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc.start();
        let http = self.http.clone();
        http.wait_ready(&mut self.proc);
    }
}

/// `strata query` over a set of StoreAPI endpoints.
pub struct Querier {
    pub proc: Proc,
    pub api: Api,
    /// The querier's own StoreAPI (`host:port`), for federation.
    pub grpc: String,
}

impl Querier {
    /// Starts with `--endpoint` for each of `endpoints`, one
    /// `--query.replica-label` per `replica_labels`, plus `extra` flags, and
    /// waits until `/api/v1/stores` lists every endpoint as healthy.
    pub fn start(
        name: &str,
        dir: &Path,
        endpoints: &[String],
        replica_labels: &[&str],
        extra: &[&str],
    ) -> Querier {
        let port = free_port();
        let grpc_port = free_port();
        let mut args = vec![
            "query".to_string(),
            format!("--http-address=127.0.0.1:{port}"),
            format!("--grpc-address=127.0.0.1:{grpc_port}"),
            // Info period (Thanos polls every 5 s): 1 s makes discovery and
            // health changes quick to wait for.
            "--endpoint.info-timeout=1s".to_string(),
        ];
        for e in endpoints {
            args.push(format!("--endpoint={e}"));
        }
        for r in replica_labels {
            args.push(format!("--query.replica-label={r}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(name, STRATA, args, dir.join(format!("{name}.log")));
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        api.wait_ready(&mut proc);
        let mut q = Querier {
            proc,
            api,
            grpc: format!("127.0.0.1:{grpc_port}"),
        };
        q.wait_stores(endpoints.len());
        q
    }

    /// Polls `/api/v1/stores` until `n` stores answer without error.
    pub fn wait_stores(&mut self, n: usize) {
        let api = self.api.clone();
        self.proc
            .wait_until(&format!("{n} healthy stores"), || healthy_stores(&api) >= n);
    }
}

/// Names of the healthy stores in `/api/v1/stores` (Thanos's shape:
/// `data.<storeType>[] {name, lastCheck, lastError, labelSets, minTime, maxTime}`).
pub fn healthy_store_names(api: &Api) -> Vec<String> {
    let (status, body) = api.get("/api/v1/stores", &[]);
    if status != 200 {
        return Vec::new();
    }
    let mut names = Vec::new();
    if let Some(types) = body["data"].as_object() {
        for stores in types.values() {
            for s in stores.as_array().into_iter().flatten() {
                let err = &s["lastError"];
                if err.is_null() || err.as_str() == Some("") {
                    names.push(s["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    names
}

pub fn healthy_stores(api: &Api) -> usize {
    healthy_store_names(api).len()
}

/// A real Prometheus 2.42 serving the blocks in `dir/data`.
pub struct Prometheus {
    /// Held so the process lives as long as this value (killed on drop).
    pub proc: Proc,
    pub api: Api,
}

impl Prometheus {
    pub fn start(name: &str, dir: &Path, config_yaml: &str) -> Prometheus {
        Prometheus::start_on(name, dir, config_yaml, free_port())
    }

    /// As [`Prometheus::start`], on a chosen port (for a configuration
    /// that scrapes the server itself).
    pub fn start_on(name: &str, dir: &Path, config_yaml: &str, port: u16) -> Prometheus {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config_yaml).expect("write config");
        let args = vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.min-block-duration=2h".into(),
            "--storage.tsdb.max-block-duration=2h".into(),
            "--storage.tsdb.retention.time=30d".into(),
            "--web.enable-remote-write-receiver".into(),
        ];
        let mut proc = Proc::spawn(name, PROMETHEUS, args, dir.join(format!("{name}.log")));
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        api.wait_ready(&mut proc);
        Prometheus { proc, api }
    }
}

pub const S3_ACCESS_KEY: &str = "AKIDSTRATAE2E";
pub const S3_SECRET_KEY: &str = "strata-e2e-secret-key";
pub const S3_BUCKET: &str = "thanos";

/// An s3s-fs server (real SigV4 checks, objects as files).
pub struct S3Server {
    pub proc: Proc,
    pub port: u16,
}

pub fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return p.into();
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|d| d.join("bin/s3s-fs"))
        .filter(|p| p.is_file());
    in_path.or(cargo_bin).unwrap_or_else(|| {
        panic!(
            "s3s-fs not found (PATH, ~/.cargo/bin or S3S_FS_BIN): run scripts/test.sh, or \
             `cargo install s3s-fs@0.14.1 --features binary --locked`"
        )
    })
}

impl S3Server {
    pub fn start(dir: &Path) -> S3Server {
        let root = dir.join("s3");
        // s3s-fs maps a bucket to a directory of its root.
        std::fs::create_dir_all(root.join(S3_BUCKET)).expect("mkdir bucket");
        let port = free_port();
        let args = vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--access-key".into(),
            S3_ACCESS_KEY.into(),
            "--secret-key".into(),
            S3_SECRET_KEY.into(),
            root.display().to_string(),
        ];
        let mut proc = Proc::spawn("s3s-fs", s3s_fs_binary(), args, dir.join("s3s-fs.log"));
        proc.wait_until("TCP accept", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        S3Server { proc, port }
    }

    pub fn objstore_yaml(&self) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {S3_BUCKET}\n  endpoint: 127.0.0.1:{}\n  region: us-east-1\n  access_key: {S3_ACCESS_KEY}\n  secret_key: {S3_SECRET_KEY}\n  insecure: true\n",
            self.port
        )
    }
}

/// A minimal HTTP exporter on 127.0.0.1 (std threads): `/metrics` serves
/// `ha_requests_total` (grows by 10 per second of wall time since start, so
/// every scraper sees the same monotonic counter) and `ha_temperature`.
pub struct Exporter {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind exporter");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        std::thread::spawn(move || serve_metrics(s, t0));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Exporter {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve_metrics(mut s: TcpStream, t0: Instant) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    // Read the request head (scrapers send no body).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let body = format!(
        "# HELP ha_requests_total Requests served.\n# TYPE ha_requests_total counter\nha_requests_total {}\n# HELP ha_temperature A gauge.\n# TYPE ha_temperature gauge\nha_temperature {}\n",
        (secs * 10.0).floor(),
        20.0 + (secs / 10.0).sin()
    );
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `create-blocks-from openmetrics` on `om` into `out` with strata
/// (`promtool = false`) or promtool.
pub fn backfill(om: &str, work: &Path, out: &Path, promtool: bool) {
    let input = work.join(format!(
        "input-{}.om",
        if promtool { "promtool" } else { "strata" }
    ));
    std::fs::write(&input, om).expect("write om");
    std::fs::create_dir_all(out).expect("mkdir out");
    let mut cmd = if promtool {
        Command::new(PROMTOOL)
    } else {
        let mut c = Command::new(STRATA);
        c.arg("tools");
        c
    };
    let output = cmd
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(out)
        .output()
        .expect("running create-blocks-from");
    assert!(
        output.status.success(),
        "create-blocks-from openmetrics ({}) failed: {}\n{}",
        if promtool { "promtool" } else { "strata" },
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(&input);
}

/// Label set of a result element as a sortable key.
pub fn labels_key(metric: &Value) -> String {
    let m: BTreeMap<String, String> = metric
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

pub fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a - b).abs() <= ABS_TOL
        || (a - b).abs() <= REL_TOL * a.abs().max(b.abs())
}

fn point(p: &Value) -> Result<(f64, f64), String> {
    let t = p[0]
        .as_f64()
        .ok_or_else(|| format!("bad timestamp in {p}"))?;
    let s = p[1].as_str().ok_or_else(|| format!("bad value in {p}"))?;
    let v = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().map_err(|_| format!("bad value {s:?}"))?,
    };
    Ok((t, v))
}

fn points(e: &Value, field: &str) -> Result<Vec<(f64, f64)>, String> {
    match field {
        "value" => Ok(vec![point(&e["value"])?]),
        _ => e["values"]
            .as_array()
            .ok_or_else(|| format!("no values in {e}"))?
            .iter()
            .map(point)
            .collect(),
    }
}

/// Warnings of a response (empty when none).
pub fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Number of series (vector/matrix) or 1 (scalar/string) in a success body.
pub fn result_len(body: &Value) -> usize {
    match body["data"]["result"].as_array() {
        Some(a) => a.len(),
        None => 1,
    }
}

/// Compares `got` against the reference `want`: same status; for errors
/// the same `errorType`; for data the same result type, the same label
/// sets, equal timestamps and values within tolerance. Returns a
/// description of the first difference.
pub fn compare(got: &Resp, want: &Resp) -> Result<(), String> {
    let (gs, g) = got;
    let (ws, w) = want;
    if gs != ws || g["status"] != w["status"] {
        return Err(format!(
            "status: got {gs} {}, want {ws} {}",
            short(g),
            short(w)
        ));
    }
    if w["status"] != "success" {
        if g["errorType"] != w["errorType"] {
            return Err(format!(
                "errorType: got {}, want {}",
                g["errorType"], w["errorType"]
            ));
        }
        return Ok(());
    }
    let (gd, wd) = (&g["data"], &w["data"]);
    if gd["resultType"] != wd["resultType"] {
        return Err(format!(
            "resultType: got {}, want {}",
            gd["resultType"], wd["resultType"]
        ));
    }
    match wd["resultType"].as_str() {
        Some("scalar") | Some("string") => {
            let (gp, wp) = (point(&gd["result"])?, point(&wd["result"])?);
            if gp.0 != wp.0 || !close(gp.1, wp.1) {
                return Err(format!("scalar: got {gp:?}, want {wp:?}"));
            }
            Ok(())
        }
        Some(kind @ ("vector" | "matrix")) => {
            let field = if kind == "vector" { "value" } else { "values" };
            let index = |d: &Value| -> Result<BTreeMap<String, Vec<(f64, f64)>>, String> {
                let mut m = BTreeMap::new();
                for e in d["result"].as_array().ok_or("result is not an array")? {
                    let key = labels_key(&e["metric"]);
                    if m.insert(key.clone(), points(e, field)?).is_some() {
                        return Err(format!("duplicate series {key}"));
                    }
                }
                Ok(m)
            };
            let (gm, wm) = (index(gd)?, index(wd)?);
            let gk: Vec<&String> = gm.keys().collect();
            let wk: Vec<&String> = wm.keys().collect();
            if gk != wk {
                let missing: Vec<_> = wk.iter().filter(|k| !gm.contains_key(**k)).collect();
                let extra: Vec<_> = gk.iter().filter(|k| !wm.contains_key(**k)).collect();
                return Err(format!(
                    "series differ: {} got, {} want; missing {missing:?}; unexpected {extra:?}",
                    gk.len(),
                    wk.len()
                ));
            }
            for (k, wp) in &wm {
                let gp = &gm[k];
                if gp.len() != wp.len() {
                    let gt: Vec<f64> = gp.iter().map(|p| p.0).collect();
                    let wt: Vec<f64> = wp.iter().map(|p| p.0).collect();
                    return Err(format!(
                        "{k}: {} points, want {}; got times {:?}.. want {:?}..",
                        gp.len(),
                        wp.len(),
                        &gt[..gt.len().min(5)],
                        &wt[..wt.len().min(5)]
                    ));
                }
                for (a, b) in gp.iter().zip(wp) {
                    if a.0 != b.0 || !close(a.1, b.1) {
                        return Err(format!("{k}: got point {a:?}, want {b:?}"));
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("unknown resultType {other:?}")),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        format!("{}…", &s[..400])
    } else {
        s
    }
}

/// Sorted `data` array of strings (labels, label values).
pub fn string_list(resp: &Resp) -> Vec<String> {
    let mut v: Vec<String> = resp.1["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {}", short(&resp.1)))
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// Sorted label sets of a `/api/v1/series` answer.
pub fn series_list(resp: &Resp) -> Vec<String> {
    let mut v: Vec<String> = resp.1["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {}", short(&resp.1)))
        .iter()
        .map(labels_key)
        .collect();
    v.sort();
    v
}

/// Runs every query of `queries` instant and range against both APIs and
/// returns one line per difference (empty = all equal). `extra` params go
/// to `got` only (e.g. `dedup`). Warnings of `got` are returned as well,
/// as `query: warning`.
pub fn compare_query_set(
    got: &Api,
    want: &Api,
    queries: &[String],
    instant_times: &[f64],
    range: (f64, f64, f64),
    extra: &[(&str, String)],
) -> (Vec<String>, Vec<String>) {
    let mut diffs = Vec::new();
    let mut warns = Vec::new();
    for q in queries {
        for &t in instant_times {
            let g = got.instant(q, t, extra);
            let w = want.instant(q, t, &[]);
            warns.extend(warnings(&g.1).into_iter().map(|x| format!("{q}: {x}")));
            if w.1["status"] != "success" {
                diffs.push(format!("reference failed on instant {q}: {}", short(&w.1)));
            }
            if let Err(e) = compare(&g, &w) {
                diffs.push(format!("instant {q} @{t}: {e}"));
            }
        }
        let (s, e, step) = range;
        let g = got.range(q, s, e, step, extra);
        let w = want.range(q, s, e, step, &[]);
        warns.extend(warnings(&g.1).into_iter().map(|x| format!("{q}: {x}")));
        if w.1["status"] != "success" {
            diffs.push(format!("reference failed on range {q}: {}", short(&w.1)));
        }
        if let Err(err) = compare(&g, &w) {
            diffs.push(format!("range {q}: {err}"));
        }
    }
    (diffs, warns)
}

/// Warnings other than PromQL annotations. Strata's engine adds the
/// Prometheus 3.x annotations (e.g. "PromQL info: sort is ineffective for
/// range queries"), which 2.42 does not have; anything else (a store
/// failing, a limit) is unexpected in a healthy setup.
pub fn unexpected_warnings(warns: &[String]) -> Vec<String> {
    warns
        .iter()
        .filter(|w| !w.contains("PromQL info:") && !w.contains("PromQL warning:"))
        .cloned()
        .collect()
}

/// The comparator itself: a broken comparator would let every
/// cross-system test pass.
mod comparator_tests {
    use super::*;
    use serde_json::json;

    fn vector(items: &[(&str, f64, &str)]) -> Resp {
        let result: Vec<Value> = items
            .iter()
            .map(|(c, t, v)| json!({"metric": {"cluster": c}, "value": [t, v]}))
            .collect();
        (
            200,
            json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
        )
    }

    #[test]
    fn equal_within_tolerance_and_in_any_order() {
        let a = vector(&[("c1", 10.0, "1.000001"), ("c2", 10.0, "NaN")]);
        let b = vector(&[("c2", 10.0, "NaN"), ("c1", 10.0, "1")]);
        assert_eq!(compare(&a, &b), Ok(()));
    }

    #[test]
    fn detects_value_time_series_and_type_differences() {
        let want = vector(&[("c1", 10.0, "1")]);
        assert!(compare(&vector(&[("c1", 10.0, "1.001")]), &want).is_err());
        assert!(compare(&vector(&[("c1", 11.0, "1")]), &want).is_err());
        assert!(compare(&vector(&[("c3", 10.0, "1")]), &want).is_err());
        assert!(compare(&vector(&[("c1", 10.0, "1"), ("c2", 10.0, "1")]), &want).is_err());
        assert!(compare(&vector(&[("c1", 10.0, "NaN")]), &want).is_err());
        let scalar = (
            200,
            json!({"status": "success", "data": {"resultType": "scalar", "result": [10, "1"]}}),
        );
        assert!(compare(&scalar, &want).is_err());
        let error = (
            400,
            json!({"status": "error", "errorType": "bad_data", "error": "x"}),
        );
        assert!(compare(&error, &want).is_err());
    }

    #[test]
    fn matrix_points_must_line_up() {
        let m = |vals: &[(f64, &str)]| -> Resp {
            let values: Vec<Value> = vals.iter().map(|(t, v)| json!([t, v])).collect();
            (
                200,
                json!({"status": "success", "data": {"resultType": "matrix",
                    "result": [{"metric": {"a": "b"}, "values": values}]}}),
            )
        };
        let want = m(&[(1.0, "1"), (2.0, "2")]);
        assert_eq!(
            compare(&m(&[(1.0, "1"), (2.0, "2.0000001")]), &want),
            Ok(())
        );
        assert!(compare(&m(&[(1.0, "1")]), &want).is_err());
        assert!(compare(&m(&[(1.0, "1"), (3.0, "2")]), &want).is_err());
    }
}
