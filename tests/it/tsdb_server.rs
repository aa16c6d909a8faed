//! `strata tsdb` as a real process: samples acknowledged by remote write
//! (204) survive `kill -9` and are served again after a restart, also when
//! the kill lands in the middle of sustained concurrent remote writes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use strata_proto::prometheus as pb;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A minimal HTTP/1.1 exchange with `Connection: close`: status and body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((status, body))
}

fn start(dir: &std::path::Path, port: u16) -> Kill {
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "tsdb",
            &format!("--storage.tsdb.path={}", dir.display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata tsdb");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/-/ready", b"").map(|r| r.0).ok() != Some(200) {
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Kill(child)
}

#[test]
fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = start(dir.path(), port);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let n = 50;
    for i in 0..n {
        let req = pb::WriteRequest {
            timeseries: vec![pb::TimeSeries {
                labels: vec![pb::Label {
                    name: "__name__".into(),
                    value: "crash_test".into(),
                }],
                samples: vec![pb::Sample {
                    value: i as f64,
                    timestamp: now - (n - i) * 1000,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy");
        let (status, text) = http(port, "POST", "/api/v1/write", &body).expect("write");
        assert_eq!(status, 204, "{text}");
    }
    // SIGKILL: no shutdown code runs.
    drop(server);
    let port = free_port();
    let _server = start(dir.path(), port);
    let q = format!(
        "/api/v1/query?query=count_over_time(crash_test%5B5m%5D)&time={}",
        now as f64 / 1000.0
    );
    let (status, body) = http(port, "GET", &q, b"").expect("query");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"{n}\"")), "{body}");
}

/// One remote-write request: `series` series `sustained{writer, s}`, one
/// sample each at `t` with value `i`.
fn sustained_batch(writer: usize, series: usize, i: i64, t: i64) -> Vec<u8> {
    let req = pb::WriteRequest {
        timeseries: (0..series)
            .map(|s| pb::TimeSeries {
                labels: vec![
                    pb::Label {
                        name: "__name__".into(),
                        value: "sustained".into(),
                    },
                    pb::Label {
                        name: "s".into(),
                        value: format!("{s:03}"),
                    },
                    pb::Label {
                        name: "writer".into(),
                        value: writer.to_string(),
                    },
                ],
                samples: vec![pb::Sample {
                    value: i as f64,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// Several writers send remote-write requests as fast as they can; the
/// server is killed with SIGKILL while requests are in flight. Every sample
/// of every request that was answered 204 must be there after the restart
/// (requests cut off by the kill may or may not be).
#[test]
fn kill_9_during_sustained_remote_write_loses_no_acknowledged_sample() {
    const WRITERS: usize = 3;
    const SERIES: usize = 40;
    const MAX_BATCHES: i64 = 3000;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = start(dir.path(), port);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Whole seconds, 59 min back: every batch i lands at base + i s, in the
    // past, inside the head and inside a 1h window ending at
    // base + MAX_BATCHES s.
    let base = (now - 3_540_000) / 1000 * 1000;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..MAX_BATCHES {
                    let body = sustained_batch(w, SERIES, i, base + i * 1000);
                    match http(port, "POST", "/api/v1/write", &body) {
                        Ok((204, _)) => acked.push(i),
                        // The kill: connection refused or reset, or closed
                        // before a status line arrived (status 0).
                        Err(_) | Ok((0, _)) => break,
                        Ok((status, text)) => panic!("writer {w}: {status} {text}"),
                    }
                }
                acked
            })
        })
        .collect();
    // Let the writers get going, then SIGKILL with requests in flight.
    std::thread::sleep(Duration::from_millis(1000));
    drop(server);
    let acked: Vec<Vec<i64>> = writers
        .into_iter()
        .map(|h| h.join().expect("writer thread"))
        .collect();
    eprintln!(
        "acknowledged batches per writer before the kill: {:?} ({SERIES} samples each)",
        acked.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for (w, a) in acked.iter().enumerate() {
        assert!(
            a.len() >= 10 && (a.len() as i64) < MAX_BATCHES,
            "writer {w}: {} acknowledged batches; the kill must land mid-stream",
            a.len()
        );
    }

    let port = free_port();
    let _server = start(dir.path(), port);
    let at = (base + MAX_BATCHES * 1000) as f64 / 1000.0;
    for (w, acked) in acked.iter().enumerate() {
        let q = format!("/api/v1/query?query=sustained%7Bwriter%3D%22{w}%22%7D%5B1h%5D&time={at}");
        let (status, body) = http(port, "GET", &q, b"").expect("query");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let result = v["data"]["result"].as_array().expect("matrix");
        assert_eq!(result.len(), SERIES, "writer {w}: series after restart");
        for series in result {
            let have: std::collections::BTreeSet<i64> = series["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| p[1].as_str().expect("value").parse::<f64>().expect("float") as i64)
                .collect();
            let missing: Vec<i64> = acked
                .iter()
                .filter(|i| !have.contains(i))
                .copied()
                .collect();
            assert!(
                missing.is_empty(),
                "writer {w} {}: acknowledged batches lost: {missing:?}",
                series["metric"]
            );
        }
    }
}
