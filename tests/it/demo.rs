//! `strata demo` as a real process, end to end: it backfills, starts two
//! `strata tsdb` + `strata sidecar` pairs (and `strata query` when the
//! binary has it), the TSDBs serve the history and live scrapes with their
//! `cluster` external label, the sidecars ship the backfilled blocks to the
//! FILESYSTEM bucket, SIGINT stops every child and exits 0, and a second
//! start reuses the data without backfilling again.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_demo::queries::EXAMPLES;

const EXE: &str = env!("CARGO_BIN_EXE_strata");

/// The demo process; killed (with its children, by pid) if a test fails.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    pids: Vec<(String, u32)>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            for (_, pid) in &self.pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Demo {
    fn start(dir: &Path, base: u16) -> Demo {
        let mut child = Command::new(EXE)
            .args(["demo", "--history", "1h", "--port-base", &base.to_string()])
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strata demo");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Demo {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
            pids: Vec::new(),
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.join("\n"),
            self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
        )
    }

    /// Reads stdout until the line `ready`, collecting child pids.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "demo not ready in {timeout:?}\n{}",
                self.output()
            );
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix("started ") {
                        let name = rest.split(' ').next().unwrap_or("").to_string();
                        let pid = rest
                            .split("(pid ")
                            .nth(1)
                            .and_then(|r| r.split(')').next())
                            .and_then(|p| p.parse().ok())
                            .unwrap_or_else(|| panic!("no pid in {l:?}"));
                        self.pids.push((name, pid));
                    }
                    let done = l == "ready";
                    self.stdout.push(l);
                    if done {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(s) = self.child.try_wait().ok().flatten() {
                        panic!("demo exited ({s}) before ready\n{}", self.output());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let s = self.child.wait();
                    panic!("demo closed stdout ({s:?}) before ready\n{}", self.output());
                }
            }
        }
    }

    /// SIGINT, then the exit status; every child must be gone.
    fn interrupt(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not exit after SIGINT\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stdout.push(l);
        }
        assert!(status.success(), "exit status {status}\n{}", self.output());
        for (name, pid) in &self.pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "{name} (pid {pid}) still runs after the demo exited"
            );
        }
    }
}

/// A base port with the demo's 24 ports free on 127.0.0.1.
fn free_port_base() -> u16 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    for i in 0..200u32 {
        let base = 20_000 + ((seed.wrapping_add(i * 7919)) % 4000) as u16 * 10;
        let free = (0..=strata_demo::layout::MAX_PORT_OFFSET)
            .all(|off| std::net::TcpListener::bind(("127.0.0.1", base + off)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of ports found");
}

/// A minimal HTTP/1.1 GET with `Connection: close`: status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `result` array of an instant query at `t` (seconds).
fn query(port: u16, q: &str, t: f64) -> Vec<serde_json::Value> {
    let (status, body) =
        get(port, &format!("/api/v1/query?query={}&time={t}", enc(q))).expect("query");
    assert_eq!(status, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Block directories (those with a meta.json) directly under `dir`.
fn blocks(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("meta.json").is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn demo_runs_stops_cleanly_and_reuses_its_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo-data");
    let base = free_port_base();
    let tsdb_port = |n: u16| base + 10 * n;
    let has_query = strata_demo::has_query_subcommand(Path::new(EXE));

    let mut demo = Demo::start(&dir, base);
    demo.wait_ready(Duration::from_secs(300));
    let out = demo.stdout.join("\n");
    assert!(out.contains("Example queries"), "{out}");
    let stderr = demo.output();
    assert!(stderr.contains("cluster1: backfilling"), "{stderr}");
    assert!(stderr.contains("cluster1: block 1/"), "{stderr}");
    let names: BTreeSet<&str> = demo.pids.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "cluster1-tsdb",
        "cluster1-sidecar",
        "cluster2-tsdb",
        "cluster2-sidecar",
    ] {
        assert!(names.contains(n), "{n} not started: {names:?}");
        assert!(dir.join("logs").join(format!("{n}.log")).is_file());
    }

    for (n, targets) in [(1u16, 9usize), (2, 7)] {
        let port = tsdb_port(n);
        let cluster = format!("cluster{n}");
        // The TSDB announces its cluster label (federation adds external labels).
        let (status, fed) =
            get(port, &format!("/federate?match[]={}", enc("up"))).expect("federate");
        assert_eq!(status, 200, "{fed}");
        assert!(fed.contains(&format!("cluster=\"{cluster}\"")), "{fed}");
        // History: every target was up half an hour ago, from the backfill.
        let past = now_s() - 1800.0;
        let r = query(port, "count(up == 1)", past);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0]["value"][1], targets.to_string(), "{cluster}: {r:?}");
        // Every example query has data (in the backfilled range).
        for e in EXAMPLES {
            let r = query(port, e.query, now_s() - 600.0);
            assert!(!r.is_empty(), "{cluster}: {} returned nothing", e.query);
        }
        // Live scrapes arrive (scrape interval 15s).
        eventually(
            &format!("{cluster} live scrapes"),
            Duration::from_secs(90),
            || {
                let r = query(port, "count(up == 1)", now_s());
                r.len() == 1
                    && r[0]["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<usize>().ok())
                        == Some(targets)
                    && query(port, "count(scrape_duration_seconds)", now_s()).len() == 1
            },
        );
    }

    // The sidecars ship the backfilled blocks, labelled with their cluster.
    let bucket = dir.join("bucket");
    let local: usize = (1..=2)
        .map(|n| blocks(&dir.join(format!("cluster{n}/tsdb"))).len())
        .sum();
    assert!(local >= 2, "backfill wrote {local} blocks");
    eventually("blocks in the bucket", Duration::from_secs(90), || {
        blocks(&bucket).len() >= local
    });
    let mut labelled = BTreeSet::new();
    for b in blocks(&bucket) {
        let meta = std::fs::read_to_string(b.join("meta.json")).expect("meta");
        for c in ["cluster1", "cluster2"] {
            if meta.contains(&format!("\"cluster\": \"{c}\""))
                || meta.contains(&format!("\"cluster\":\"{c}\""))
            {
                labelled.insert(c);
            }
        }
    }
    assert_eq!(
        labelled.len(),
        2,
        "external labels in the bucket's metas: {labelled:?}"
    );

    // The querier over both clusters' tsdbs (it must exist: no skipping).
    assert!(has_query, "`strata query` is not a subcommand of {EXE}");
    let qport = base + 2;
    eventually(
        "both clusters through the querier",
        Duration::from_secs(90),
        || {
            let r = query(qport, "sum by (cluster) (up)", now_s());
            let c: BTreeSet<String> = r
                .iter()
                .filter_map(|s| s["metric"]["cluster"].as_str().map(str::to_string))
                .collect();
            c.len() == 2
        },
    );
    // Every query of the Grafana dashboard (deploy/dashboards/queries.txt,
    // kept current by strata-deploy-check) returns data through the querier,
    // in the backfilled range.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dashboards/queries.txt"),
    )
    .expect("deploy/dashboards/queries.txt");
    let mut checked = 0;
    for line in dashboard
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (panel, q) = line.split_once('\t').expect("<panel>\t<query>");
        let r = query(qport, q, now_s() - 600.0);
        assert!(
            !r.is_empty(),
            "dashboard panel {panel}: {q} returned nothing"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} dashboard queries found");
    // The built-in web page, in a headless browser, against this querier.
    browser_check(qport);

    demo.interrupt();
    let out = demo.stdout.join("\n");
    assert!(out.contains("all processes stopped"), "{out}");
    for (n, _) in [(1u16, ()), (2, ())] {
        assert!(
            get(tsdb_port(n), "/-/ready").is_err(),
            "cluster{n} tsdb still listens"
        );
    }
    let before: BTreeSet<PathBuf> = (1..=2)
        .flat_map(|n| blocks(&dir.join(format!("cluster{n}/tsdb"))))
        .collect();
    drop(demo);

    // Second start: same data, no backfill, history still there.
    let mut demo = Demo::start(&dir, base);
    demo.wait_ready(Duration::from_secs(300));
    let out = demo.output();
    assert!(out.contains("cluster1: reusing existing data"), "{out}");
    assert!(out.contains("cluster2: reusing existing data"), "{out}");
    assert!(!out.contains("backfilling"), "{out}");
    let after: BTreeSet<PathBuf> = (1..=2)
        .flat_map(|n| blocks(&dir.join(format!("cluster{n}/tsdb"))))
        .collect();
    assert_eq!(before, after, "the second start wrote or removed blocks");
    let r = query(tsdb_port(1), "count(up == 1)", now_s() - 1800.0);
    assert_eq!(r.len(), 1, "{r:?}");
    demo.interrupt();
}

#[test]
fn a_child_that_dies_stops_the_demo_with_its_log_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo-data");
    let base = free_port_base();
    // cluster2's TSDB cannot bind its port: it exits at once.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", base + 20)).expect("bind");
    let mut demo = Demo::start(&dir, base);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        while let Ok(l) = demo.lines.try_recv() {
            if let Some(rest) = l.strip_prefix("started ") {
                let name = rest.split(' ').next().unwrap_or("").to_string();
                if let Some(pid) = rest
                    .split("(pid ")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .and_then(|p| p.parse().ok())
                {
                    demo.pids.push((name, pid));
                }
            }
            demo.stdout.push(l);
        }
        if let Some(s) = demo.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "demo kept running\n{}",
            demo.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the reader threads drain.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(l) = demo.lines.try_recv() {
        demo.stdout.push(l);
    }
    let out = demo.output();
    assert!(!status.success(), "{out}");
    assert!(out.contains("cluster2-tsdb exited unexpectedly"), "{out}");
    assert!(out.contains("last lines of"), "{out}");
    // The tail quotes the child's own error: the address it could not bind.
    assert!(out.contains(&format!("127.0.0.1:{}", base + 20)), "{out}");
    assert!(!demo.pids.is_empty(), "{out}");
    for (name, pid) in &demo.pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) still runs after the demo failed"
        );
    }
}

/// Runs tests/browser/ui_check.mjs (playwright-core + Debian's Chromium,
/// installed by scripts/install-browser.sh) against the querier's page.
fn browser_check(qport: u16) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = std::env::temp_dir().join(format!("strata-ui-{qport}.png"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/ui_check.mjs"))
        .args(["--url", &format!("http://127.0.0.1:{qport}")])
        .args(["--query", "sum by (cluster) (up)", "--range", "15m"])
        .args(["--expect-stores", "2"])
        .args([
            "--expect-label",
            "cluster=cluster1",
            "--expect-label",
            "cluster=cluster2",
        ])
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .expect("node (run scripts/install-browser.sh)");
    assert!(
        out.status.success(),
        "web page check failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
