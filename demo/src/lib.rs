//! `strata demo`: the whole system on one machine, in one command.
//!
//! [`run`] starts, in this order:
//! 1. the demo exporters ([`exporters`]): one in-process HTTP server per
//!    simulated cluster, serving Kubernetes-style metrics (cAdvisor,
//!    node-exporter, kube-state-metrics, API server, scheduler) computed by
//!    the deterministic [`model`];
//! 2. on first start, a backfill ([`backfill`]) of `--history` hours per
//!    cluster into its TSDB data directory as 2h Prometheus blocks, from the
//!    same model, so graphs are not empty; later starts find
//!    `clusterN/backfill.json` and reuse the data;
//! 3. child processes of the same executable ([`children`]): per cluster a
//!    `strata tsdb` (generated `prometheus.yml` with
//!    `external_labels: {cluster: clusterN}`, a short block duration so new
//!    blocks reach the bucket within minutes, its own gRPC StoreAPI and
//!    Query API) and a `strata sidecar` (ships blocks); then one `strata
//!    query` over both tsdbs' gRPC, when the binary has that
//!    subcommand. Each is awaited on `/-/ready`; a child that dies stops
//!    the demo with the tail of its log;
//! 4. it prints what is where ([`layout`]) and example queries
//!    ([`queries::EXAMPLES`]), and runs until SIGINT or SIGTERM, then stops
//!    every child (SIGTERM, SIGKILL after a timeout) and returns `Ok`.
//!
//! # Main types
//! * [`Options`]: the flags of `strata demo`.
//! * [`model::Cluster`] / [`model::Target`]: the simulated clusters, public
//!   so dashboards and end-to-end tests can reuse them.
//! * [`Error`]: everything that stops the demo, with the failing child's
//!   log tail where there is one.

pub mod backfill;
pub mod children;
pub mod exporters;
pub mod layout;
pub mod model;
pub mod queries;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use children::{Child, Readiness};
use layout::{ClusterLayout, Layout};
use model::Cluster;

/// Longest `--history` accepted: a week (about 14 M samples per cluster).
pub const MAX_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything that stops the demo.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tsdb(#[from] strata_tsdb::Error),
    #[error("{0}")]
    Config(String),
    #[error("binding {addr}: {source} (is another demo running? try --port-base)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{name} exited unexpectedly ({status}); last lines of {log}:\n{tail}", log = .log.display())]
    ChildDied {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} did not become ready ({url}) within {secs}s; last lines of {log}:\n{tail}", log = .log.display())]
    NotReady {
        name: String,
        url: String,
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The flags of `strata demo`.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `strata` executable to start children from (the demo's own).
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    /// A Thanos objstore.yml; `None`: a FILESYSTEM bucket under the data dir.
    pub objstore_config_file: Option<PathBuf>,
    /// How much history to backfill on first start.
    pub history: Duration,
    pub scrape_interval: Duration,
    /// The TSDBs' min = max block duration.
    pub block_duration: Duration,
    pub port_base: u16,
    pub query_http_address: Option<String>,
    pub query_grpc_address: Option<String>,
    /// How long a child may take to become ready.
    pub ready_timeout: Duration,
    /// How long children get to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

impl Options {
    /// Defaults for everything but the executable.
    pub fn new(exe: PathBuf) -> Options {
        Options {
            exe,
            data_dir: PathBuf::from("demo-data"),
            objstore_config_file: None,
            history: Duration::from_secs(6 * 3600),
            scrape_interval: Duration::from_secs(15),
            block_duration: Duration::from_secs(5 * 60),
            port_base: layout::DEFAULT_PORT_BASE,
            query_http_address: None,
            query_grpc_address: None,
            ready_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(15),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.history > MAX_HISTORY {
            return Err(Error::Config(format!(
                "--history {}h is more than the limit of {}h",
                self.history.as_secs() / 3600,
                MAX_HISTORY.as_secs() / 3600
            )));
        }
        let secs = self.scrape_interval.as_secs();
        if secs == 0 || secs > 3600 || self.scrape_interval.subsec_nanos() != 0 {
            return Err(Error::Config(
                "the scrape interval must be whole seconds between 1s and 1h".into(),
            ));
        }
        let bd = self.block_duration.as_secs();
        if bd < 60 || self.block_duration.subsec_nanos() != 0 || !bd.is_multiple_of(60) {
            return Err(Error::Config(
                "the block duration must be whole minutes, at least 1m".into(),
            ));
        }
        if u32::from(self.port_base) + u32::from(layout::MAX_PORT_OFFSET) > 65535
            || self.port_base < 1024
        {
            return Err(Error::Config(format!(
                "--port-base {} leaves no room for the demo's ports (base+0 … base+{}), or is privileged",
                self.port_base,
                layout::MAX_PORT_OFFSET
            )));
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Writes `contents` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, contents: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// What `clusterN/backfill.json` records.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct BackfillMarker {
    pub cluster: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub interval_ms: i64,
    pub blocks: usize,
    pub series: usize,
}

/// Whether the `strata` executable has a `query` subcommand.
pub fn has_query_subcommand(exe: &Path) -> bool {
    std::process::Command::new(exe)
        .args(["query", "--help"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the demo until SIGINT/SIGTERM (see the module docs).
pub fn run(opts: Options) -> Result<(), Error> {
    opts.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("starting the async runtime: {e}")))?;
    rt.block_on(run_async(opts))
}

/// Turns true at the first SIGINT or SIGTERM.
fn stop_signal() -> Result<watch::Receiver<bool>, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig_err = |e| Error::Config(format!("installing signal handlers: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(sig_err)?;
    let mut term = signal(SignalKind::terminate()).map_err(sig_err)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        println!("\nreceived {name}: stopping every process … (again to kill them at once)");
        let _ = tx.send(true);
        // A second signal: the user does not want to wait for the
        // children's graceful shutdown.
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        println!("received a second signal: killing every process");
        children::FORCE_KILL.store(true, Ordering::Relaxed);
    });
    Ok(rx)
}

async fn run_async(opts: Options) -> Result<(), Error> {
    let mut stop = stop_signal()?;
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| Error::io(&opts.data_dir, e))?;
    let data_dir =
        std::fs::canonicalize(&opts.data_dir).map_err(|e| Error::io(&opts.data_dir, e))?;
    let lock_path = data_dir.join("demo.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    lock.try_lock().map_err(|e| {
        Error::Config(format!(
            "{}: another `strata demo` uses this data directory ({e})",
            lock_path.display()
        ))
    })?;
    let objstore = opts
        .objstore_config_file
        .as_deref()
        .map(|p| std::fs::canonicalize(p).map_err(|e| Error::io(p, e)))
        .transpose()?;
    let layout = Layout::new(
        &data_dir,
        opts.port_base,
        objstore.as_deref(),
        opts.query_http_address.as_deref(),
        opts.query_grpc_address.as_deref(),
    );
    std::fs::create_dir_all(&layout.logs_dir).map_err(|e| Error::io(&layout.logs_dir, e))?;
    if let Some(b) = &layout.bucket_dir {
        std::fs::create_dir_all(b).map_err(|e| Error::io(b, e))?;
        write_atomic(&layout.objstore_file, &layout::filesystem_objstore_yml(b))?;
    }
    let clusters: Vec<Arc<Cluster>> = model::clusters().into_iter().map(Arc::new).collect();

    // Exporters first: a port conflict fails before any data is written.
    let (exp_stop_tx, exp_stop_rx) = watch::channel(false);
    for (c, cl) in clusters.iter().zip(&layout.clusters) {
        let listener = tokio::net::TcpListener::bind(&cl.exporters)
            .await
            .map_err(|source| Error::Bind {
                addr: cl.exporters.clone(),
                source,
            })?;
        let mut rx = exp_stop_rx.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = exporters::serve(listener, c, stopped).await {
                tracing::error!(error = %e, "demo exporter stopped");
            }
        });
    }

    for (c, cl) in clusters.iter().zip(&layout.clusters) {
        std::fs::create_dir_all(&cl.dir).map_err(|e| Error::io(&cl.dir, e))?;
        write_atomic(
            &cl.config_file,
            &layout::prometheus_yml(c, &cl.exporters, opts.scrape_interval.as_secs()),
        )?;
        match prepare_history(c.clone(), cl, &opts, &stop).await {
            Ok(()) => {}
            Err(Error::Interrupted) => {
                println!(
                    "backfill of {} interrupted; the next start writes it again",
                    cl.name
                );
                let _ = exp_stop_tx.send(true);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }

    let mut children: Vec<Child> = Vec::new();
    let result = start_and_wait(&opts, &layout, &mut children, &mut stop).await;
    if !children.is_empty() {
        let killed = children::stop_all(&mut children, opts.stop_timeout).await;
        if !killed.is_empty() {
            println!(
                "killed (SIGKILL) after {}s without exiting: {}",
                opts.stop_timeout.as_secs(),
                killed.join(", ")
            );
        }
        println!(
            "all processes stopped; the data stays in {}",
            data_dir.display()
        );
    }
    let _ = exp_stop_tx.send(true);
    drop(lock);
    result
}

/// Backfills a cluster's history unless its marker says it is there.
async fn prepare_history(
    cluster: Arc<Cluster>,
    cl: &ClusterLayout,
    opts: &Options,
    stop: &watch::Receiver<bool>,
) -> Result<(), Error> {
    if let Ok(text) = std::fs::read_to_string(&cl.backfill_marker) {
        if let Ok(m) = serde_json::from_str::<BackfillMarker>(&text) {
            println!(
                "{}: reusing existing data in {} (history {} … {} backfilled at first start)",
                cl.name,
                cl.tsdb_dir.display(),
                rfc3339(m.start_ms),
                rfc3339(m.end_ms)
            );
            return Ok(());
        }
    }
    if cl.tsdb_dir.join("wal").is_dir() {
        // The TSDB has run here, so this is data to keep, even though the
        // marker is gone or unreadable.
        println!(
            "{}: reusing existing data in {} (no backfill marker; not backfilling over live data)",
            cl.name,
            cl.tsdb_dir.display()
        );
        return Ok(());
    }
    // Leftovers of an interrupted backfill: only blocks, no WAL.
    if cl.tsdb_dir.is_dir() {
        for d in strata_tsdb::block::block_dirs(&cl.tsdb_dir)? {
            strata_tsdb::block::delete_block_dir(&d)?;
        }
        strata_tsdb::block::remove_tmp_dirs(&cl.tsdb_dir)?;
    }
    let end_ms = now_ms();
    let plan = backfill::Plan {
        start_ms: end_ms - opts.history.as_millis() as i64,
        end_ms,
        interval_ms: opts.scrape_interval.as_millis() as i64,
    };
    let series = backfill::series_of(&cluster).len();
    let total = plan.num_blocks();
    eprintln!(
        "{}: backfilling {}h of history ({} series every {}s, {} … {}) into {} as {} block(s)",
        cl.name,
        opts.history.as_secs_f64() / 3600.0,
        series,
        opts.scrape_interval.as_secs(),
        rfc3339(plan.start_ms),
        rfc3339(plan.end_ms),
        cl.tsdb_dir.display(),
        total
    );
    let cancel = Arc::new(AtomicBool::new(false));
    let watcher = {
        let cancel = cancel.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            cancel.store(true, Ordering::Relaxed);
        })
    };
    let dir = cl.tsdb_dir.clone();
    let name = cl.name.clone();
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || {
        backfill::backfill(&cluster, &dir, plan, &cancel, &mut |m, done, total| {
            eprintln!(
                "{name}: block {done}/{total} {} {} … {} ({} series, {} samples)",
                m.ulid,
                rfc3339(m.min_time),
                rfc3339(m.max_time),
                m.stats.num_series,
                m.stats.num_samples
            );
        })
    })
    .await
    .map_err(|e| Error::Config(format!("backfill task failed: {e}")))?;
    watcher.abort();
    let blocks = res?;
    let marker = BackfillMarker {
        cluster: cl.name.clone(),
        start_ms: plan.start_ms,
        end_ms: plan.end_ms,
        interval_ms: plan.interval_ms,
        blocks: blocks.len(),
        series,
    };
    let text = serde_json::to_string_pretty(&marker)
        .map_err(|e| Error::Config(format!("encoding the backfill marker: {e}")))?;
    write_atomic(&cl.backfill_marker, &text)?;
    eprintln!(
        "{}: backfill done in {:.1}s",
        cl.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts every child, waits for each to be ready, prints the summary, and
/// waits for a stop signal or a child's death.
async fn start_and_wait(
    opts: &Options,
    layout: &Layout,
    children: &mut Vec<Child>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Error> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
    let block = format!("{}m", opts.block_duration.as_secs() / 60);
    let exe = &opts.exe;
    let log = |name: &str| layout.logs_dir.join(format!("{name}.log"));
    let start = |children: &mut Vec<Child>, name: String, args: Vec<String>, http_addr: &str| {
        let c = Child::spawn(
            &name,
            exe,
            &args,
            &log(&name),
            format!("http://{http_addr}/-/ready"),
        )?;
        println!("started {name} (pid {}), log: {}", c.pid(), c.log.display());
        children.push(c);
        Ok::<(), Error>(())
    };

    for cl in &layout.clusters {
        start(
            children,
            format!("{}-tsdb", cl.name),
            vec![
                "tsdb".into(),
                format!("--config.file={}", cl.config_file.display()),
                format!("--storage.tsdb.path={}", cl.tsdb_dir.display()),
                format!("--web.listen-address={}", cl.tsdb_http),
                format!("--grpc-address={}", cl.tsdb_grpc),
                format!("--storage.tsdb.min-block-duration={block}"),
                format!("--storage.tsdb.max-block-duration={block}"),
            ],
            &cl.tsdb_http,
        )?;
    }
    if wait_all(children, &http, opts.ready_timeout, stop).await? == Readiness::Stopped {
        return Ok(());
    }
    for cl in &layout.clusters {
        start(
            children,
            format!("{}-sidecar", cl.name),
            vec![
                "sidecar".into(),
                format!("--tsdb.path={}", cl.tsdb_dir.display()),
                format!("--prometheus.url=http://{}", cl.tsdb_http),
                format!("--objstore.config-file={}", layout.objstore_file.display()),
                format!("--grpc-address={}", cl.sidecar_grpc),
                format!("--http-address={}", cl.sidecar_http),
            ],
            &cl.sidecar_http,
        )?;
    }
    if wait_all(children, &http, opts.ready_timeout, stop).await? == Readiness::Stopped {
        return Ok(());
    }
    let query = has_query_subcommand(exe);
    if query {
        let mut args = vec![
            "query".into(),
            format!("--http-address={}", layout.query_http),
            format!("--grpc-address={}", layout.query_grpc),
        ];
        args.extend(
            layout
                .clusters
                .iter()
                .map(|cl| format!("--endpoint={}", cl.tsdb_grpc)),
        );
        start(children, "query".into(), args, &layout.query_http)?;
        if wait_all(children, &http, opts.ready_timeout, stop).await? == Readiness::Stopped {
            return Ok(());
        }
    }
    print!("{}", summary(opts, layout, query));
    println!("ready");

    loop {
        for c in children.iter_mut() {
            if let Some(status) = c.exited() {
                return Err(c.died(status));
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Waits for every child not yet known ready.
async fn wait_all(
    children: &mut [Child],
    http: &reqwest::Client,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<Readiness, Error> {
    for c in children.iter_mut() {
        if children::wait_ready(c, http, timeout, stop).await? == Readiness::Stopped {
            return Ok(Readiness::Stopped);
        }
    }
    Ok(Readiness::Ready)
}

/// The "what is where" text printed once everything is ready.
pub fn summary(opts: &Options, layout: &Layout, query: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let block = opts.block_duration.as_secs() / 60;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "strata demo is running: {} simulated Kubernetes clusters, each a strata tsdb + strata sidecar{}.",
        layout.clusters.len(),
        if query { ", and one strata query over both" } else { "" }
    );
    let _ = writeln!(s);
    if query {
        let _ = writeln!(
            s,
            "  Grafana data source (type \"Prometheus\"), URL:  http://{}",
            layout.query_http
        );
        let _ = writeln!(
            s,
            "  Querier web page and HTTP API:                 http://{}/",
            layout.query_http
        );
        let _ = writeln!(
            s,
            "  Querier StoreAPI (gRPC):                       {}",
            layout.query_grpc
        );
    } else {
        let _ = writeln!(
            s,
            "  `strata query` is not part of this build: query each cluster's strata tsdb below\n  (its answers lack the `cluster` label, which the sidecars add)."
        );
    }
    let _ = writeln!(s);
    for cl in &layout.clusters {
        let _ = writeln!(
            s,
            "  {}: strata tsdb http://{} (gRPC {})   sidecar gRPC {} (HTTP {})   exporters http://{}/",
            cl.name, cl.tsdb_http, cl.tsdb_grpc, cl.sidecar_grpc, cl.sidecar_http, cl.exporters
        );
    }
    let _ = writeln!(s);
    for cl in &layout.clusters {
        let _ = writeln!(s, "  Data of {}:  {}", cl.name, cl.tsdb_dir.display());
    }
    match &layout.bucket_dir {
        Some(b) => {
            let _ = writeln!(
                s,
                "  Bucket:  FILESYSTEM, {}  (config {})",
                b.display(),
                layout.objstore_file.display()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  Bucket:  as configured in {}",
                layout.objstore_file.display()
            );
        }
    }
    let _ = writeln!(s, "  Logs:    {}/<process>.log", layout.logs_dir.display());
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  Blocks: the TSDBs run with --storage.tsdb.min-block-duration = max-block-duration = {block}m\n  (production: 2h), so each cuts its first block after about {:.1} minutes and then one every\n  {block} minutes, which the sidecars upload to the bucket within 30s. The backfilled history\n  (2h blocks) is uploaded as soon as the sidecars start.",
        block as f64 * 1.5
    );
    let _ = writeln!(s);
    let target = if query {
        format!("http://{}", layout.query_http)
    } else {
        layout
            .clusters
            .first()
            .map(|c| format!("http://{}", c.tsdb_http))
            .unwrap_or_default()
    };
    let _ = writeln!(
        s,
        "Example queries (paste into Grafana's Explore, or use curl as shown at the end):"
    );
    for e in queries::EXAMPLES {
        let _ = writeln!(s, "  # {}\n  {}", e.title, e.query);
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  curl -s {target}/api/v1/query --data-urlencode 'query={}'",
        queries::EXAMPLES[0].query
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Press Ctrl-C to stop every process; the next start reuses the data in {}.",
        layout.data_dir.display()
    );
    s
}
