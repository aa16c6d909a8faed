//! `strata tsdb` as a real process: samples acknowledged by remote write
//! (204) survive `kill -9` and are served again after a restart.

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
