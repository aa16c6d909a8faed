//! S3 acceptance of the sidecar next to `strata tsdb`, against a real S3
//! server (s3s-fs on 127.0.0.1; `scripts/test.sh` installs it):
//! - the blocks appear in the bucket with Thanos' layout and meta.json, and
//!   download back into blocks that strata and promtool open;
//! - `kill -9` of a sidecar process while it uploads (held right before the
//!   block's meta.json reaches S3) leaves a partial block the meta fetcher
//!   ignores, and the restarted sidecar completes it, uploading each block
//!   once;
//! - an S3 outage: uploads fail (counted in `/metrics`), are retried at
//!   every sync, and everything arrives once the server is back.
//!
//! The killed sidecar is a child process: this test binary run again with
//! `--ignored --exact s3::sidecar_child_process` and its configuration in
//! `STRATA_IT_SIDECAR_CHILD`.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bucket::block::download_block;
use strata_bucket::{Bucket, FetcherOptions, Meta, MetaFetcher, ObjstoreConfig};
use strata_sidecar::shipper::read_meta_file;
use strata_sidecar::SidecarConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ulid::Ulid;

use crate::acceptance::{dataset, strata_tsdb_with};
use crate::{block_ids, metric_value, RunningSidecar};

const ACCESS_KEY: &str = "AKIDSIDECARTEST";
const SECRET_KEY: &str = "sidecar-test-secret-key";
const BUCKET: &str = "thanos";
const CHILD_ENV: &str = "STRATA_IT_SIDECAR_CHILD";

fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return Some(p.into());
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    in_path.or_else(|| {
        std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
            .map(|d| d.join("bin/s3s-fs"))
            .filter(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An s3s-fs process over a directory that outlives restarts.
struct S3 {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    root: PathBuf,
}

impl S3 {
    fn start(root: PathBuf) -> S3 {
        let bin = s3s_fs_binary().unwrap_or_else(|| {
            panic!(
                "s3s-fs not found (PATH, ~/.cargo/bin or S3S_FS_BIN): run scripts/test.sh, or \
                 `cargo install s3s-fs@0.14.1 --features binary --locked`"
            )
        });
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut s = S3 {
            bin,
            child: None,
            port: free_port(),
            root,
        };
        s.restart();
        s
    }

    /// (Re)starts the server on its port, retrying another port only on
    /// the first start (later the clients' configuration names the port).
    fn restart(&mut self) {
        let first = self.child.is_none();
        for _ in 0..5 {
            let mut child = Command::new(&self.bin)
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&self.root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning s3s-fs");
            let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if first {
                self.port = free_port();
            } else {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        panic!("s3s-fs did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn yaml(endpoint: &str, max_retries: usize) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {endpoint}\n  region: us-east-1\n  access_key: {ACCESS_KEY}\n  secret_key: {SECRET_KEY}\n  insecure: true\n  max_retries: {max_retries}\n"
        )
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn bucket(&self) -> Bucket {
        ObjstoreConfig::parse(&Self::yaml(&self.endpoint(), 2))
            .unwrap()
            .build()
            .unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ext() -> Vec<(String, String)> {
    vec![
        ("cluster".into(), "acceptance".into()),
        ("replica".into(), "r0".into()),
    ]
}

/// Local block ids in shipping (minTime) order.
fn local_blocks(tsdb: &Path) -> Vec<Ulid> {
    let mut ids: Vec<(i64, Ulid)> = block_ids(tsdb)
        .iter()
        .map(|id| {
            let meta = strata_tsdb::meta::BlockMeta::read(&tsdb.join(id)).unwrap();
            (meta.min_time, id.parse().unwrap())
        })
        .collect();
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

async fn wait_shipped(tsdb: &Path, n: usize, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if read_meta_file(tsdb).map_or(0, |m| m.uploaded.len()) >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: blocks not shipped in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every uploaded block: complete, with the Thanos section, byte-identical
/// to the local block, and nothing else in the bucket.
async fn check_bucket(bucket: &Bucket, tsdb: &Path, ids: &[Ulid]) {
    let fetched = MetaFetcher::new(bucket.clone(), FetcherOptions::default())
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert!(fetched.partial.is_empty(), "partial: {:?}", fetched.partial);
    assert_eq!(
        fetched.metas.keys().copied().collect::<Vec<_>>(),
        {
            let mut s = ids.to_vec();
            s.sort();
            s
        },
        "blocks in the bucket"
    );
    let objects = bucket.list_recursive("").await.unwrap();
    for id in ids {
        let local = tsdb.join(id.to_string());
        let mut want: Vec<String> = vec![format!("{id}/index"), format!("{id}/meta.json")];
        for e in std::fs::read_dir(local.join("chunks")).unwrap() {
            want.push(format!(
                "{id}/chunks/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
        want.sort();
        let mut got: Vec<String> = objects
            .iter()
            .filter(|o| o.key.starts_with(&format!("{id}/")))
            .map(|o| o.key.clone())
            .collect();
        got.sort();
        assert_eq!(got, want, "layout of {id}");
        let meta = &fetched.metas[id];
        let labels: Vec<(String, String)> = meta.thanos.labels.clone().into_iter().collect();
        assert_eq!(labels, ext());
        assert_eq!(meta.thanos.source, "sidecar");
        assert_eq!(meta.thanos.downsample.resolution, 0);
        for f in &meta.thanos.files {
            if f.rel_path == "meta.json" {
                continue;
            }
            let size = std::fs::metadata(local.join(&f.rel_path)).unwrap().len();
            assert_eq!(f.size_bytes as u64, size, "{id}/{}", f.rel_path);
        }
        assert!(meta.thanos.files.iter().any(|f| f.rel_path == "index"));
        assert_eq!(
            bucket.get(&format!("{id}/index")).await.unwrap().as_ref(),
            std::fs::read(local.join("index")).unwrap().as_slice()
        );
    }
    // Blocks and the deletion/no-compact markers only: nothing stray.
    for o in &objects {
        let top = o.key.split('/').next().unwrap();
        assert!(
            top.parse::<Ulid>().is_ok_and(|u| ids.contains(&u)),
            "unexpected object {}",
            o.key
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_of_strata_tsdb_land_in_s3_and_read_back() {
    let work = tempfile::tempdir().unwrap();
    let d = dataset();
    let server = strata_tsdb_with(&d, work.path()).await;
    let tsdb = work.path().join("strata-data");
    let ids = local_blocks(&tsdb);
    assert!(ids.len() >= 2, "{ids:?}");
    let s3 = S3::start(work.path().join("s3"));
    let mut cfg = SidecarConfig::new(&tsdb);
    cfg.prometheus_url = format!("http://{}", server.local_addr());
    cfg.objstore = Some(ObjstoreConfig::parse(&S3::yaml(&s3.endpoint(), 2)).unwrap());
    cfg.sync_interval = Duration::from_millis(300);
    let sidecar = RunningSidecar::start(cfg).await;
    wait_shipped(&tsdb, ids.len(), "upload", Duration::from_secs(60)).await;
    let shipped = read_meta_file(&tsdb).unwrap().uploaded;
    assert_eq!(shipped, ids, "shipped in time order");
    let bucket = s3.bucket();
    check_bucket(&bucket, &tsdb, &ids).await;
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(&metrics, "thanos_shipper_uploads_total"),
        Some(ids.len() as f64),
        "{metrics}"
    );

    // Download every block; strata and promtool read it.
    let dl = work.path().join("downloaded");
    for id in &ids {
        let meta: Meta = download_block(&bucket, *id, &dl.join(id.to_string()))
            .await
            .unwrap();
        let block = strata_tsdb::block::Block::open(&dl.join(id.to_string())).unwrap();
        let local = strata_tsdb::block::Block::open(&tsdb.join(id.to_string())).unwrap();
        assert_eq!(block.meta().stats, local.meta().stats);
        assert_eq!(meta.block.ulid, local.meta().ulid);
        let all = block
            .select(
                &[strata_tsdb::labels::Matcher::equal("__name__", "acc_churn")],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        let want = local
            .select(
                &[strata_tsdb::labels::Matcher::equal("__name__", "acc_churn")],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(all.len(), want.len());
        for (a, b) in all.iter().zip(&want) {
            assert_eq!(a.labels, b.labels);
            assert_eq!(
                a.samples(i64::MIN, i64::MAX).unwrap(),
                b.samples(i64::MIN, i64::MAX).unwrap()
            );
        }
    }
    if Path::new("/usr/bin/promtool").is_file() {
        let out = Command::new("/usr/bin/promtool")
            .args(["tsdb", "list"])
            .arg(&dl)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for id in &ids {
            assert!(
                text.contains(&id.to_string()),
                "promtool lists {id}:\n{text}"
            );
        }
    } else {
        eprintln!("promtool not found: skipped `promtool tsdb list` of the downloaded blocks");
    }
    sidecar.stop().await;
    server.shutdown().await.unwrap();
}

/// A TCP proxy in front of s3s-fs. It holds back (never forwards) the
/// first `PUT …/meta.json` request and reports its path; everything else,
/// and everything after, passes through.
struct HoldingProxy {
    port: u16,
    held: tokio::sync::watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    async fn start(upstream: SocketAddr) -> HoldingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(true));
        let (tx, held) = tokio::sync::watch::channel(None::<String>);
        let tx = Arc::new(tx);
        let a = armed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (a, tx) = (a.clone(), tx.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if a.load(Ordering::SeqCst) {
                            if let Some(path) = meta_json_put(&buf[..n]) {
                                a.store(false, Ordering::SeqCst);
                                let _ = tx.send(Some(path));
                                // Hold the request: the client waits for an
                                // answer that never comes until it dies.
                                std::future::pending::<()>().await;
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                });
            }
        });
        HoldingProxy { port, held, task }
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path of a `PUT <path>/meta.json HTTP/1.1` request line in `buf`.
fn meta_json_put(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    let start = text.find("PUT /")?;
    let line = text[start..].lines().next()?;
    let path = line.strip_prefix("PUT ")?.split(' ').next()?;
    path.split('?')
        .next()
        .filter(|p| p.ends_with("/meta.json"))
        .map(str::to_string)
}

/// The child process' entry point: a sidecar configured by the parent.
#[test]
#[ignore = "entry point of the sidecar child process started by kill9_during_upload"]
fn sidecar_child_process() {
    let Ok(conf) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = conf.split('\n').collect();
    let [tsdb, url, objstore, grpc, http] = parts[..] else {
        panic!("bad {CHILD_ENV}: {conf:?}");
    };
    let mut cfg = SidecarConfig::new(tsdb);
    cfg.prometheus_url = url.into();
    cfg.objstore = strata_sidecar::Objstore::from_flags(Some(Path::new(objstore)), None).unwrap();
    cfg.grpc_address = grpc.into();
    cfg.http_address = http.into();
    cfg.sync_interval = Duration::from_millis(200);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(strata_sidecar::run(cfg, std::future::pending()))
        .unwrap();
}

struct ChildSidecar {
    child: Child,
    http: String,
}

impl ChildSidecar {
    fn start(tsdb: &Path, url: &str, objstore: &Path) -> ChildSidecar {
        let http = format!("127.0.0.1:{}", free_port());
        let conf = format!(
            "{}\n{url}\n{}\n127.0.0.1:{}\n{http}",
            tsdb.display(),
            objstore.display(),
            free_port()
        );
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "s3::sidecar_child_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the sidecar child");
        ChildSidecar { child, http }
    }

    /// SIGKILL: no destructor, no flush, like `kill -9`.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    async fn metrics(&self) -> Option<String> {
        reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }
}

impl Drop for ChildSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_upload_leaves_no_visible_partial_block() {
    let work = tempfile::tempdir().unwrap();
    let d = dataset();
    let server = strata_tsdb_with(&d, work.path()).await;
    let url = format!("http://{}", server.local_addr());
    let tsdb = work.path().join("strata-data");
    let ids = local_blocks(&tsdb);
    assert!(ids.len() >= 2, "{ids:?}");
    let s3 = S3::start(work.path().join("s3"));
    let bucket = s3.bucket();

    // Hold the first block's meta.json, after its chunks and index.
    let proxy = HoldingProxy::start(s3.endpoint().parse().unwrap()).await;
    let objstore = work.path().join("objstore.yml");
    std::fs::write(&objstore, S3::yaml(&format!("127.0.0.1:{}", proxy.port), 2)).unwrap();
    let mut child = ChildSidecar::start(&tsdb, &url, &objstore);
    let mut held = proxy.held.clone();
    let path = tokio::time::timeout(Duration::from_secs(60), held.wait_for(|h| h.is_some()))
        .await
        .expect("a meta.json upload is held")
        .unwrap()
        .clone()
        .unwrap();
    // The block's chunks and index are in the bucket; its meta.json is not.
    child.kill9();
    let partial: Ulid = path
        .trim_start_matches(&format!("/{BUCKET}/"))
        .trim_end_matches("/meta.json")
        .parse()
        .unwrap_or_else(|e| panic!("block id in {path}: {e}"));
    assert_eq!(partial, ids[0], "the oldest block is shipped first");
    let recorded = read_meta_file(&tsdb)
        .map(|m| m.uploaded)
        .unwrap_or_default();
    assert!(!recorded.contains(&partial));
    assert_eq!(recorded[..], ids[..recorded.len()], "time order");
    let keys: Vec<String> = bucket
        .list_recursive(&partial.to_string())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        keys.iter().any(|k| k.ends_with("/index")),
        "index uploaded before meta.json: {keys:?}"
    );
    assert!(!keys.iter().any(|k| k.ends_with("/meta.json")), "{keys:?}");
    let fetched = MetaFetcher::new(bucket.clone(), FetcherOptions::default())
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert!(
        !fetched.metas.contains_key(&partial),
        "partial block is invisible"
    );
    assert_eq!(fetched.partial, vec![partial]);
    assert_eq!(fetched.metas.len(), recorded.len());

    // Restart (through the disarmed proxy): the rest is uploaded once.
    let child = ChildSidecar::start(&tsdb, &url, &objstore);
    wait_shipped(&tsdb, ids.len(), "after restart", Duration::from_secs(60)).await;
    assert_eq!(read_meta_file(&tsdb).unwrap().uploaded, ids);
    check_bucket(&bucket, &tsdb, &ids).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let uploads = loop {
        if let Some(v) = child
            .metrics()
            .await
            .and_then(|m| metric_value(&m, "thanos_shipper_uploads_total"))
        {
            if v as usize + recorded.len() >= ids.len() || Instant::now() > deadline {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "child /metrics unreachable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        uploads as usize,
        ids.len() - recorded.len(),
        "the restarted sidecar uploads only what was not recorded"
    );
    drop(child);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_loses_nothing() {
    // STRATA_IT_S3_OUTAGE_SECS lengthens the outage (soak runs: minutes).
    let outage = Duration::from_secs(
        std::env::var("STRATA_IT_S3_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let work = tempfile::tempdir().unwrap();
    let d = dataset();
    let server = strata_tsdb_with(&d, work.path()).await;
    let tsdb = work.path().join("strata-data");
    let ids = local_blocks(&tsdb);
    let mut s3 = S3::start(work.path().join("s3"));
    s3.stop();

    let mut cfg = SidecarConfig::new(&tsdb);
    cfg.prometheus_url = format!("http://{}", server.local_addr());
    // One retry per request, so each sync fails fast and is counted.
    cfg.objstore = Some(ObjstoreConfig::parse(&S3::yaml(&s3.endpoint(), 1)).unwrap());
    cfg.sync_interval = Duration::from_millis(300);
    let sidecar = RunningSidecar::start(cfg).await;
    let started = Instant::now();
    // The outage lasts at least `outage`; failures must show within a minute.
    let deadline = started + outage + Duration::from_secs(60);
    loop {
        let m = sidecar.metrics().await;
        let failures = metric_value(&m, "thanos_shipper_upload_failures_total").unwrap_or(0.0);
        if failures >= 2.0 && started.elapsed() >= outage {
            break;
        }
        assert!(Instant::now() < deadline, "failures not reported:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(read_meta_file(&tsdb).is_none_or(|m| m.uploaded.is_empty()));

    s3.restart();
    wait_shipped(
        &tsdb,
        ids.len(),
        "after the outage",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(read_meta_file(&tsdb).unwrap().uploaded, ids);
    check_bucket(&s3.bucket(), &tsdb, &ids).await;
    let m = sidecar.metrics().await;
    assert_eq!(
        metric_value(&m, "thanos_shipper_uploads_total"),
        Some(ids.len() as f64),
        "each block uploaded once:\n{m}"
    );
    sidecar.stop().await;
    server.shutdown().await.unwrap();
}
