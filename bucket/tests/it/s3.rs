//! Against a real S3 server: s3s-fs (pure Rust, checks SigV4 signatures,
//! stores objects as files), started per test on 127.0.0.1 with a free port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_bucket::block::{self, block_key};
use strata_bucket::{Bucket, FetcherOptions, MetaFetcher, ObjstoreConfig};
use ulid::Ulid;

use crate::{fixture_block, read_tree, sidecar_meta, FIXTURE_ID};

const ACCESS_KEY: &str = "AKIDSTRATATEST";
const SECRET_KEY: &str = "strata-test-secret-key";
const BUCKET: &str = "thanos";

/// An s3s-fs process; killed when dropped.
struct S3Server {
    child: Child,
    port: u16,
    addr: SocketAddr,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

fn s3s_fs_binary() -> PathBuf {
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
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        // s3s-fs maps a bucket to a directory of its root.
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let port = free_port();
        let mut server = S3Server {
            child: spawn(&root, port),
            port,
            addr: "127.0.0.1:0".parse().unwrap(),
            root,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        // The port is chosen before the spawn; another process may grab it
        // in between, so retry on a fresh port if the server dies.
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(status) = self.child.try_wait().unwrap() {
                    eprintln!("s3s-fs exited early ({status}); retrying on another port");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.addr = addr;
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.port = free_port();
            self.child = spawn(&self.root, self.port);
        }
        panic!("s3s-fs did not start");
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn config(&self, extra: &str) -> ObjstoreConfig {
        let yaml = format!(
            "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {}\n  region: us-east-1\n  access_key: {ACCESS_KEY}\n  secret_key: {SECRET_KEY}\n  insecure: true\n{extra}",
            self.endpoint()
        );
        ObjstoreConfig::parse(&yaml).unwrap()
    }

    fn bucket(&self) -> Bucket {
        self.config("").build().unwrap()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(root: &Path, port: u16) -> Child {
    Command::new(s3s_fs_binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning s3s-fs")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_block_lifecycle() {
    let server = S3Server::start();
    let bucket = server.bucket();
    let id: Ulid = FIXTURE_ID.parse().unwrap();

    let uploaded = block::upload_block(&bucket, &fixture_block(), sidecar_meta())
        .await
        .unwrap();
    assert_eq!(block::list_block_ids(&bucket).await.unwrap(), vec![id]);
    assert_eq!(
        bucket.list(FIXTURE_ID).await.unwrap(),
        vec![
            format!("{FIXTURE_ID}/chunks/"),
            format!("{FIXTURE_ID}/index"),
            format!("{FIXTURE_ID}/meta.json"),
        ]
    );
    // The objects really are on the server's disk.
    let stored = server.root.join(BUCKET).join(FIXTURE_ID).join("index");
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(fixture_block().join("index")).unwrap()
    );
    // Range reads, as the store gateway does on the index.
    let index = std::fs::read(fixture_block().join("index")).unwrap();
    let r = bucket
        .get_range(&block_key(id, "index"), 5..37)
        .await
        .unwrap();
    assert_eq!(&r[..], &index[5..37]);

    // A partial upload: chunks and index of another block, no meta.json.
    let partial = Ulid::from_parts(id.timestamp_ms() + 1, 7);
    bucket
        .upload_file(
            &fixture_block().join("chunks/000001"),
            &block_key(partial, "chunks/000001"),
        )
        .await
        .unwrap();
    bucket
        .upload_file(&fixture_block().join("index"), &block_key(partial, "index"))
        .await
        .unwrap();

    let fetcher = MetaFetcher::new(bucket.clone(), FetcherOptions::default()).unwrap();
    let view = fetcher.fetch().await.unwrap();
    assert!(view.is_complete(), "{:?}", view.errors);
    assert_eq!(view.metas.keys().copied().collect::<Vec<_>>(), vec![id]);
    assert_eq!(*view.metas[&id], uploaded);
    assert_eq!(view.partial, vec![partial]);
    assert_eq!(view.meta_reads, 1);
    assert_eq!(fetcher.fetch().await.unwrap().meta_reads, 0, "cached");

    // Download and compare bytes.
    let d = tempfile::tempdir().unwrap();
    let dst = d.path().join(FIXTURE_ID);
    block::download_block(&bucket, id, &dst).await.unwrap();
    let got = read_tree(&dst);
    let want = read_tree(&fixture_block());
    for (rel, bytes) in &want {
        if rel == "tombstones" || rel == "meta.json" {
            continue;
        }
        let (_, g) = got
            .iter()
            .find(|(p, _)| p == rel)
            .unwrap_or_else(|| panic!("{rel} missing"));
        assert_eq!(g, bytes, "{rel}");
    }
    assert_eq!(
        std::fs::read(dst.join("meta.json")).unwrap(),
        uploaded.to_json(),
        "meta.json as uploaded"
    );

    // A deletion mark hides the block from a reader that ignores marked
    // blocks right away.
    assert!(block::mark_for_deletion(&bucket, id, "retention")
        .await
        .unwrap());
    let hiding = MetaFetcher::new(
        bucket.clone(),
        FetcherOptions {
            ignore_deletion_marks_delay: Some(Duration::ZERO),
            ..Default::default()
        },
    )
    .unwrap();
    let view = hiding.fetch().await.unwrap();
    assert!(view.metas.is_empty(), "{view:?}");
    assert_eq!(view.marked_for_deletion[&id].details, "retention");

    block::delete_block(&bucket, id).await.unwrap();
    block::delete_block(&bucket, partial).await.unwrap();
    assert!(bucket.list_recursive("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_and_prefix() {
    let server = S3Server::start();
    let bucket = server
        .config("  part_size: 5242880\nprefix: tenant-a\n")
        .build()
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big");
    let data: Vec<u8> = (0..(11 << 20) + 123)
        .map(|i: u32| (i % 253) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    assert_eq!(
        bucket.upload_file(&big, "x/big").await.unwrap(),
        data.len() as u64
    );
    assert_eq!(bucket.get("x/big").await.unwrap().len(), data.len());
    assert!(bucket.get("x/big").await.unwrap() == data);
    // Under the prefix on the server, invisible without it.
    assert!(server.root.join(BUCKET).join("tenant-a/x/big").is_file());
    let plain = server.bucket();
    assert_eq!(plain.list("").await.unwrap(), vec!["tenant-a/"]);
    assert!(plain.exists("tenant-a/x/big").await.unwrap());
    assert_eq!(bucket.list("").await.unwrap(), vec!["x/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_a_clear_error() {
    let server = S3Server::start();
    let yaml = format!(
        "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {}\n  access_key: {ACCESS_KEY}\n  secret_key: not-the-secret\n  insecure: true\n",
        server.endpoint()
    );
    let bucket = ObjstoreConfig::parse(&yaml).unwrap().build().unwrap();
    let start = Instant::now();
    let e = bucket.upload("k", "v").await.unwrap_err();
    assert!(e.is_access_denied(), "{e:?}");
    let msg = e.to_string();
    eprintln!("wrong credentials: {msg}");
    assert!(
        msg.starts_with(&format!("upload s3://{BUCKET}/k: access denied")),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret"), "{msg}");
    // Not retried: a 403 will not fix itself.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(bucket.exists("k").await.unwrap_err().is_access_denied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_server_fails_after_bounded_retries() {
    let mut server = S3Server::start();
    let bucket = server.config("  max_retries: 2\n").build().unwrap();
    bucket.upload("k", "v").await.unwrap();
    server.stop();

    let start = Instant::now();
    let e = bucket.get("k").await.unwrap_err();
    let took = start.elapsed();
    let msg = e.to_string();
    eprintln!("stopped server after {took:?}: {msg}");
    assert!(!e.is_not_found() && !e.is_access_denied(), "{e:?}");
    assert!(msg.starts_with(&format!("get s3://{BUCKET}/k: ")), "{msg}");
    assert!(msg.contains("after 2 retries"), "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_from_the_environment_when_the_config_has_none() {
    let server = S3Server::start();
    let yaml = format!(
        "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {}\n  region: us-east-1\n  insecure: true\n",
        server.endpoint()
    );
    let config = ObjstoreConfig::parse(&yaml).unwrap();
    // Thanos' minio client also reads the older AWS_ACCESS_KEY / AWS_SECRET_KEY.
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY" => Some(ACCESS_KEY.to_string()),
        "AWS_SECRET_KEY" => Some(SECRET_KEY.to_string()),
        _ => None,
    };
    let bucket = config.build_with_env(&env).unwrap();
    bucket.upload("from-env", "v").await.unwrap();
    assert_eq!(&bucket.get("from-env").await.unwrap()[..], b"v");

    let wrong = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("wrong".to_string()),
        _ => None,
    };
    let e = config
        .build_with_env(&wrong)
        .unwrap()
        .get("from-env")
        .await
        .unwrap_err();
    assert!(e.is_access_denied(), "{e}");
}
