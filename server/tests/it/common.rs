//! Shared helpers: starting a server, remote-write and remote-read codecs.

use std::time::{Duration, Instant};

use prost::Message;
use strata_proto::prometheus as pb;
use strata_server::{Server, ServerOptions};

pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start(f: impl FnOnce(&mut ServerOptions)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = ServerOptions {
            storage_path: dir.path().join("data"),
            listen_address: "127.0.0.1:0".into(),
            enable_remote_write_receiver: true,
            ..ServerOptions::default()
        };
        f(&mut opts);
        let server = Server::start(opts).await.expect("server starts");
        let base = format!("http://{}", server.local_addr());
        TestServer {
            server,
            dir,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a snappy-compressed protobuf; returns status and body text.
    pub async fn post_snappy(&self, path: &str, msg: &impl Message) -> (u16, Vec<u8>, String) {
        let body = snap::raw::Encoder::new()
            .compress_vec(&msg.encode_to_vec())
            .expect("snappy");
        let resp = self
            .http
            .post(self.url(path))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, resp.bytes().await.expect("body").to_vec(), ct)
    }

    /// GET returning status and JSON.
    pub async fn get_json(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    /// Instant query at `time` (seconds); the result vector.
    pub async fn query(&self, q: &str, time: f64) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}&time={time}", urlenc(q));
        let (status, v) = self.get_json(&path).await;
        assert_eq!(status, 200, "{v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("shutdown");
    }
}

pub fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| pb::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| pb::Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

pub fn write_request(ts: Vec<pb::TimeSeries>) -> pb::WriteRequest {
    pb::WriteRequest {
        timeseries: ts,
        ..Default::default()
    }
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Splits a streamed remote-read body into messages, checking each CRC.
pub fn decode_frames(mut b: &[u8]) -> Vec<pb::ChunkedReadResponse> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = b[0];
            b = &b[1..];
            len |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        let crc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let msg = &b[4..4 + len as usize];
        assert_eq!(crc32c::crc32c(msg), crc, "frame checksum");
        out.push(pb::ChunkedReadResponse::decode(msg).expect("frame decodes"));
        b = &b[4 + len as usize..];
    }
    out
}
