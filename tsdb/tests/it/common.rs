//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn promtool() -> Command {
    Command::new("promtool")
}

/// `promtool tsdb dump` of a directory that holds only blocks (promtool
/// needs a `wal/` directory to exist; it also leaves `chunks_head/`).
pub fn promtool_dump(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    let out = run(promtool().args(["tsdb", "dump"]).arg(dir));
    let _ = std::fs::remove_dir_all(dir.join("wal"));
    let _ = std::fs::remove_dir_all(dir.join("chunks_head"));
    out
}

/// strata's dump of a directory, in promtool's line format.
pub fn strata_dump(dir: &Path) -> String {
    let mut out = Vec::new();
    let all = strata_tsdb::tools::parse_selector("{__name__=~'(?s:.*)'}").unwrap();
    strata_tsdb::tools::dump(dir, i64::MIN, i64::MAX, &all, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Block directories in `dir`, sorted by name.
pub fn blocks_in(dir: &Path) -> Vec<PathBuf> {
    strata_tsdb::block::block_dirs(dir).unwrap()
}

/// A deterministic OpenMetrics input: counters and gauges, several series,
/// `hours` hours at `step_s` spacing starting at `start_s`, with resets,
/// stale-free float values incl. fractions, large and tiny numbers.
pub fn openmetrics(start_s: i64, hours: i64, step_s: i64, series: usize) -> String {
    let mut s = String::from("# HELP reqs Requests.\n# TYPE reqs counter\n");
    let n = hours * 3600 / step_s;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut vals = vec![0f64; series];
    let mut lines = Vec::new();
    for i in 0..n {
        let t = start_s + i * step_s;
        for (k, v) in vals.iter_mut().enumerate() {
            if rnd() % 500 == 0 {
                *v = 0.0;
            } else {
                *v += (rnd() % 1000) as f64 / 8.0;
            }
            lines.push(format!(
                "reqs_total{{pod=\"p{}\",code=\"{}\"}} {} {}",
                k / 2,
                200 + (k % 2) * 300,
                v,
                t
            ));
        }
    }
    s.push_str(&lines.join("\n"));
    s.push_str("\n# TYPE mem gauge\n");
    let mut lines = Vec::new();
    for i in 0..n {
        let t = start_s + i * step_s;
        for k in 0..series / 2 + 1 {
            let v = match k % 3 {
                0 => (rnd() % (1 << 40)) as f64,
                1 => (rnd() % 1000) as f64 * 1e-9,
                _ => -((rnd() % 100) as f64) / 3.0,
            };
            lines.push(format!("mem{{pod=\"p{k}\"}} {v} {t}"));
        }
    }
    s.push_str(&lines.join("\n"));
    s.push_str("\n# EOF\n");
    s
}

pub fn backfill(input: &Path, out: &Path) -> Vec<strata_tsdb::meta::BlockMeta> {
    let data = std::fs::read(input).unwrap();
    strata_tsdb::backfill::create_blocks_from_openmetrics(
        &data,
        out,
        strata_tsdb::backfill::BackfillOptions {
            max_block_duration: 0,
            max_samples_in_appender: strata_tsdb::backfill::DEFAULT_MAX_SAMPLES_IN_APPENDER,
            on_block: &mut |_| {},
        },
    )
    .unwrap()
}

/// A child process killed when dropped, so a failing test leaves nothing.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Stops the process cleanly (SIGTERM, as an operator would) and waits
    /// for it, so its files are complete when this returns.
    pub fn terminate(&mut self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.0.wait().expect("wait for the process");
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 client over loopback (no client crate in this crate's
/// dependencies). Handles Content-Length and chunked bodies.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut body = resp[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    (status, body)
}

/// Waits until `GET /-/ready` answers 200, up to 60 s.
pub fn wait_ready(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/-/ready", &[], b"").0 == 200
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server on port {port} not ready in 60s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts Prometheus 2.42 on `data` with 2h blocks (no local compaction) and
/// the remote-write receiver, scraping nothing.
pub fn start_prometheus(data: &Path, port: u16) -> ChildGuard {
    let cfg = data.with_extension("yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args([
            "--web.enable-remote-write-receiver",
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
            "--storage.tsdb.retention.time=100y",
            "--log.level=warn",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus (apt-get install prometheus)");
    ChildGuard(child)
}

/// Encodes a remote-write 1.0 `WriteRequest` (protobuf) and snappy-compresses
/// it. Series are `(labels sorted by name, samples (t_ms, v))`.
/// A series to remote-write: labels sorted by name, samples `(t_ms, v)`.
pub type WriteSeries<'a> = (Vec<(&'a str, String)>, Vec<(i64, f64)>);

pub fn remote_write_body(series: &[WriteSeries<'_>]) -> Vec<u8> {
    fn varint(b: &mut Vec<u8>, mut x: u64) {
        while x >= 0x80 {
            b.push((x as u8) | 0x80);
            x >>= 7;
        }
        b.push(x as u8);
    }
    fn field_bytes(b: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(b, (field << 3) | 2);
        varint(b, data.len() as u64);
        b.extend_from_slice(data);
    }
    let mut req = Vec::new();
    for (labels, samples) in series {
        let mut ts = Vec::new();
        for (n, v) in labels {
            let mut l = Vec::new();
            field_bytes(&mut l, 1, n.as_bytes());
            field_bytes(&mut l, 2, v.as_bytes());
            field_bytes(&mut ts, 1, &l);
        }
        for (t, v) in samples {
            let mut s = Vec::new();
            varint(&mut s, (1 << 3) | 1);
            s.extend_from_slice(&v.to_le_bytes());
            varint(&mut s, 2 << 3);
            varint(&mut s, *t as u64);
            field_bytes(&mut ts, 2, &s);
        }
        field_bytes(&mut req, 1, &ts);
    }
    snap::raw::Encoder::new().compress_vec(&req).unwrap()
}
