//! HTTP client for the Prometheus-compatible TSDB next to the sidecar.
//!
//! - [`PromClient::external_labels`]: `GET /api/v1/status/config`, then
//!   `global.external_labels` from the returned YAML (Thanos'
//!   `promclient.ExternalLabels`).
//! - [`PromClient::block_durations`]: `GET /api/v1/status/flags`, the
//!   `storage.tsdb.{min,max}-block-duration` flags the sidecar validates.
//! - [`PromClient::lowest_timestamp`]: the metric
//!   `prometheus_tsdb_lowest_timestamp_seconds` from `GET /metrics`, which Thanos advertises as the store's min time.
//! - [`PromClient::remote_read`]: `POST /api/v1/read` asking for
//!   `STREAMED_XOR_CHUNKS` first and `SAMPLES` second; both answers are
//!   turned into [`ReadSeries`] with raw chunks.
//! - [`PromClient::label_names`] / [`PromClient::label_values`]: the HTTP
//!   label APIs with `start`, `end` and `match[]`.
//! - [`PromClient::metric_metadata`]: `GET /api/v1/metadata` with `metric`
//!   and `limit`, for the Metadata API.
//!
//! Streamed remote read frames are `uvarint(len) | be32(crc32c(msg)) | msg`
//! (Prometheus `storage/remote/chunked.go`); every frame's CRC is checked.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use strata_proto::prometheus::{
    self as pb, read_request::ResponseType, ChunkedReadResponse, ReadRequest, ReadResponse,
};
use strata_tsdb::labels::{go_quote, MatchType, Matcher};

/// Errors talking to Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Connection, timeout or body error.
    #[error("{op} {url}: {source}")]
    Http {
        op: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Non-2xx status.
    #[error("{op} {url}: HTTP {status}: {body}")]
    Status {
        op: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    /// The answer could not be decoded.
    #[error("{op} {url}: {msg}")]
    Decode {
        op: &'static str,
        url: String,
        msg: String,
    },
}

/// Longest error body quoted in an error message.
const MAX_ERROR_BODY: usize = 512;

/// Largest remote-read answer accepted (Prometheus' own default chunked read
/// limit is 50 MB per frame; this bounds the whole answer held in memory).
pub const MAX_READ_RESPONSE: usize = 1 << 30;

/// Samples per chunk when re-encoding a `SAMPLES` answer, as Thanos does.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// One series of a remote-read answer, chunks in StoreAPI form.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadSeries {
    /// Labels in Prometheus order (sorted by name).
    pub labels: Vec<(String, String)>,
    pub chunks: Vec<strata_proto::thanos::AggrChunk>,
}

/// Which remote-read answer Prometheus chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    StreamedXorChunks,
    Samples,
}

/// A client for one Prometheus base URL.
#[derive(Clone, Debug)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

impl PromClient {
    /// `base` is e.g. `http://localhost:9090` (a trailing `/` is ignored).
    pub fn new(base: &str) -> Result<Self, PromError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Remote read requests go out in several writes; with Nagle's
            // algorithm each waits for the server's delayed ACK (~40 ms).
            // reqwest's default today, set here so it cannot silently change.
            .tcp_nodelay(true)
            .build()
            .map_err(|source| PromError::Http {
                op: "build client for",
                url: base.to_string(),
                source,
            })?;
        Ok(PromClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get_bytes(
        &self,
        op: &'static str,
        url: String,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, PromError> {
        let full = if query.is_empty() {
            url.clone()
        } else {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            format!("{url}?{}", q.finish())
        };
        let resp = self
            .http
            .get(&full)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| PromError::Http {
                op,
                url: url.clone(),
                source,
            })?;
        read_ok(op, url, resp).await
    }

    /// `data` of a Prometheus API envelope.
    async fn api_data(
        &self,
        op: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<serde_json::Value, PromError> {
        let url = self.url(path);
        let body = self.get_bytes(op, url.clone(), query).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| PromError::Decode {
                op,
                url: url.clone(),
                msg: format!("invalid JSON: {e}"),
            })?;
        if v.get("status").and_then(|s| s.as_str()) != Some("success") {
            return Err(PromError::Decode {
                op,
                url,
                msg: format!("status is not success: {}", truncate(&v.to_string())),
            });
        }
        Ok(v.get("data").cloned().unwrap_or(serde_json::Value::Null))
    }

    /// `global.external_labels` of the running configuration, sorted by name.
    pub async fn external_labels(&self) -> Result<Vec<(String, String)>, PromError> {
        let op = "get config from";
        let data = self.api_data(op, "/api/v1/status/config", &[]).await?;
        let yaml = data
            .get("yaml")
            .and_then(|y| y.as_str())
            .ok_or_else(|| PromError::Decode {
                op,
                url: self.url("/api/v1/status/config"),
                msg: "no data.yaml in the answer".into(),
            })?;
        parse_external_labels(yaml).map_err(|msg| PromError::Decode {
            op,
            url: self.url("/api/v1/status/config"),
            msg,
        })
    }

    /// `(min, max)` block durations as Prometheus reports its flags.
    pub async fn block_durations(&self) -> Result<(String, String), PromError> {
        let op = "get flags from";
        let data = self.api_data(op, "/api/v1/status/flags", &[]).await?;
        let get = |k: &str| {
            data.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| PromError::Decode {
                    op,
                    url: self.url("/api/v1/status/flags"),
                    msg: format!("flag {k} missing"),
                })
        };
        Ok((
            get("storage.tsdb.min-block-duration")?,
            get("storage.tsdb.max-block-duration")?,
        ))
    }

    /// The TSDB's lowest timestamp in ms, from `prometheus_tsdb_lowest_timestamp_seconds`.
    /// `None` when the metric is absent (e.g. another TSDB).
    pub async fn lowest_timestamp(&self) -> Result<Option<i64>, PromError> {
        let body = self
            .get_bytes("get metrics from", self.url("/metrics"), &[])
            .await?;
        let text = String::from_utf8_lossy(&body);
        Ok(parse_lowest_timestamp(&text))
    }

    /// `GET /api/v1/labels`.
    pub async fn label_names(
        &self,
        start_ms: i64,
        end_ms: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, PromError> {
        let q = label_query(start_ms, end_ms, matchers);
        let data = self
            .api_data("get label names from", "/api/v1/labels", &q)
            .await?;
        Ok(string_list(data))
    }

    /// `GET /api/v1/label/<name>/values`.
    pub async fn label_values(
        &self,
        name: &str,
        start_ms: i64,
        end_ms: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, PromError> {
        let q = label_query(start_ms, end_ms, matchers);
        let path = format!("/api/v1/label/{}/values", percent_encode(name));
        let data = self.api_data("get label values from", &path, &q).await?;
        Ok(string_list(data))
    }

    /// `GET /api/v1/metadata` (Thanos' `MetricMetadataInGRPC`): metric name
    /// to its distinct metadata entries. `metric` empty means all; `limit`
    /// is sent only when non-negative (Prometheus: 0 = nothing, negative =
    /// no limit).
    pub async fn metric_metadata(
        &self,
        metric: &str,
        limit: i32,
    ) -> Result<BTreeMap<String, Vec<MetricMeta>>, PromError> {
        let op = "get metadata from";
        let mut q = Vec::new();
        if !metric.is_empty() {
            q.push(("metric", metric.to_string()));
        }
        if limit >= 0 {
            q.push(("limit", limit.to_string()));
        }
        let data = self.api_data(op, "/api/v1/metadata", &q).await?;
        parse_metadata(data).map_err(|msg| PromError::Decode {
            op,
            url: self.url("/api/v1/metadata"),
            msg,
        })
    }

    /// One remote-read query. Prefers streamed XOR chunks; a TSDB that only
    /// speaks `SAMPLES` is re-chunked at [`SAMPLES_PER_CHUNK`] samples.
    /// Series come back in the order Prometheus sent them, consecutive
    /// frames of one series merged.
    pub async fn remote_read(
        &self,
        start_ms: i64,
        end_ms: i64,
        matchers: &[Matcher],
    ) -> Result<(ReadKind, Vec<ReadSeries>), PromError> {
        let op = "remote read from";
        let url = self.url("/api/v1/read");
        let req = ReadRequest {
            queries: vec![pb::Query {
                start_timestamp_ms: start_ms,
                end_timestamp_ms: end_ms,
                matchers: matchers.iter().map(to_remote_matcher).collect(),
                hints: None,
            }],
            accepted_response_types: vec![
                ResponseType::StreamedXorChunks as i32,
                ResponseType::Samples as i32,
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| PromError::Decode {
                op,
                url: url.clone(),
                msg: format!("snappy: {e}"),
            })?;
        let resp = self
            .http
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|source| PromError::Http {
                op,
                url: url.clone(),
                source,
            })?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = read_ok(op, url.clone(), resp).await?;
        let decode_err = |msg: String| PromError::Decode {
            op,
            url: url.clone(),
            msg,
        };
        if content_type.starts_with("application/x-streamed-protobuf") {
            let series = decode_streamed(&body).map_err(decode_err)?;
            Ok((ReadKind::StreamedXorChunks, series))
        } else {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .map_err(|e| decode_err(format!("snappy: {e}")))?;
            let resp =
                ReadResponse::decode(raw.as_slice()).map_err(|e| decode_err(e.to_string()))?;
            Ok((ReadKind::Samples, samples_to_series(resp)))
        }
    }
}

async fn read_ok(
    op: &'static str,
    url: String,
    resp: reqwest::Response,
) -> Result<Vec<u8>, PromError> {
    let status = resp.status();
    if let Some(len) = resp.content_length() {
        if len as usize > MAX_READ_RESPONSE {
            return Err(PromError::Decode {
                op,
                url,
                msg: format!("answer of {len} bytes exceeds {MAX_READ_RESPONSE}"),
            });
        }
    }
    let body = resp.bytes().await.map_err(|source| PromError::Http {
        op,
        url: url.clone(),
        source,
    })?;
    if !status.is_success() {
        return Err(PromError::Status {
            op,
            url,
            status: status.as_u16(),
            body: truncate(&String::from_utf8_lossy(&body)),
        });
    }
    Ok(body.to_vec())
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ERROR_BODY) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn string_list(v: serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(a) => a
            .into_iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Go's `time` cannot represent every int64 of milliseconds; clamp to years
/// 1..9999 so Prometheus' `parseTime` accepts the bound.
fn api_time(ms: i64) -> String {
    const MIN: i64 = -62_135_596_800_000;
    const MAX: i64 = 253_402_300_799_000;
    let ms = ms.clamp(MIN, MAX);
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

fn label_query(start_ms: i64, end_ms: i64, matchers: &[Matcher]) -> Vec<(&'static str, String)> {
    let mut q = vec![("start", api_time(start_ms)), ("end", api_time(end_ms))];
    if !matchers.is_empty() {
        q.push(("match[]", selector(matchers)));
    }
    q
}

/// `{a="b",c=~"d"}` with Go quoting, as PromQL parses it back.
pub fn selector(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| format!("{}{}{}", m.name, m.kind.as_str(), go_quote(&m.value)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn to_remote_matcher(m: &Matcher) -> pb::LabelMatcher {
    use pb::label_matcher::Type;
    let t = match m.kind {
        MatchType::Equal => Type::Eq,
        MatchType::NotEqual => Type::Neq,
        MatchType::Regex => Type::Re,
        MatchType::NotRegex => Type::Nre,
    };
    pb::LabelMatcher {
        r#type: t as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

#[derive(serde::Deserialize, Default)]
struct PromConfig {
    #[serde(default)]
    global: Option<GlobalConfig>,
}

#[derive(serde::Deserialize, Default)]
struct GlobalConfig {
    #[serde(default)]
    external_labels: Option<BTreeMap<String, String>>,
}

/// One metadata entry of `/api/v1/metadata`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct MetricMeta {
    /// `counter`, `gauge`, `histogram`, `summary`, `unknown`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub unit: String,
}

/// Most metric families accepted from one `/api/v1/metadata` answer, so a
/// misbehaving TSDB cannot make the sidecar hold an unbounded map.
pub const MAX_METADATA_FAMILIES: usize = 1_000_000;

/// The `data` of `/api/v1/metadata`: `{"metric": [{type, help, unit}, ...]}`.
pub fn parse_metadata(
    data: serde_json::Value,
) -> Result<BTreeMap<String, Vec<MetricMeta>>, String> {
    let serde_json::Value::Object(map) = data else {
        return Err(format!(
            "metadata is not an object: {}",
            truncate(&data.to_string())
        ));
    };
    if map.len() > MAX_METADATA_FAMILIES {
        return Err(format!(
            "{} metric families exceed the limit of {MAX_METADATA_FAMILIES}",
            map.len()
        ));
    }
    map.into_iter()
        .map(|(name, v)| {
            let metas: Vec<MetricMeta> =
                serde_json::from_value(v).map_err(|e| format!("metadata of {name:?}: {e}"))?;
            Ok((name, metas))
        })
        .collect()
}

/// External labels from a Prometheus configuration file, sorted by name.
pub fn parse_external_labels(yaml: &str) -> Result<Vec<(String, String)>, String> {
    let cfg: PromConfig =
        serde_saphyr::from_str(yaml).map_err(|e| format!("invalid configuration YAML: {e}"))?;
    Ok(cfg
        .global
        .and_then(|g| g.external_labels)
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// `prometheus_tsdb_lowest_timestamp_seconds <v>` × 1000 from a text exposition.
pub fn parse_lowest_timestamp(text: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("prometheus_tsdb_lowest_timestamp_seconds")?;
        let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
        v.is_finite().then_some((v * 1000.0) as i64)
    })
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

fn convert_labels(labels: Vec<pb::Label>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels.into_iter().map(|l| (l.name, l.value)).collect();
    v.sort();
    v
}

/// Pushes a series, or appends its chunks to the previous one when
/// Prometheus split one series across frames.
fn push_series(out: &mut Vec<ReadSeries>, s: ReadSeries) {
    match out.last_mut() {
        Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks),
        _ => out.push(s),
    }
}

/// Decodes a streamed (`STREAMED_XOR_CHUNKS`) answer.
pub fn decode_streamed(mut b: &[u8]) -> Result<Vec<ReadSeries>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (len, n) = uvarint(b).ok_or("truncated frame length")?;
        b = &b[n..];
        let len = usize::try_from(len).map_err(|_| "frame length overflows")?;
        if b.len() < 4 || b.len() - 4 < len {
            return Err(format!("frame of {len} bytes truncated ({} left)", b.len()));
        }
        let crc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let msg = &b[4..4 + len];
        if crc32c::crc32c(msg) != crc {
            return Err("frame checksum mismatch".into());
        }
        b = &b[4 + len..];
        let frame = ChunkedReadResponse::decode(msg).map_err(|e| e.to_string())?;
        for cs in frame.chunked_series {
            let chunks = cs
                .chunks
                .into_iter()
                .map(strata_proto::storeapi::aggr_chunk_from_remote)
                .collect::<Result<Vec<_>, _>>()?;
            push_series(
                &mut out,
                ReadSeries {
                    labels: convert_labels(cs.labels),
                    chunks,
                },
            );
        }
    }
    Ok(out)
}

/// Re-encodes a `SAMPLES` answer as XOR chunks. Histogram samples are not
/// carried by this path (Prometheus 2.42 streams them as chunks anyway).
pub fn samples_to_series(resp: ReadResponse) -> Vec<ReadSeries> {
    use strata_proto::thanos::{chunk::Encoding as TEnc, AggrChunk, Chunk};
    let mut out = Vec::new();
    for result in resp.results {
        for ts in result.timeseries {
            let samples: Vec<(i64, f64)> =
                ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
            let chunks = samples
                .chunks(SAMPLES_PER_CHUNK)
                .filter_map(|part| {
                    let (first, last) = (part.first()?, part.last()?);
                    let mut c = strata_tsdb::chunkenc::XorChunk::new();
                    for &(t, v) in part {
                        c.append(t, v);
                    }
                    Some(AggrChunk {
                        min_time: first.0,
                        max_time: last.0,
                        raw: Some(Chunk {
                            r#type: TEnc::Xor as i32,
                            data: c.into_bytes().into(),
                            hash: 0,
                        }),
                        ..Default::default()
                    })
                })
                .collect();
            push_series(
                &mut out,
                ReadSeries {
                    labels: convert_labels(ts.labels),
                    chunks,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_labels_from_yaml() {
        let yaml = "global:\n  scrape_interval: 15s\n  external_labels:\n    replica: a\n    cluster: c1\nscrape_configs: []\n";
        assert_eq!(
            parse_external_labels(yaml).unwrap(),
            vec![
                ("cluster".to_string(), "c1".to_string()),
                ("replica".to_string(), "a".to_string())
            ]
        );
        assert!(parse_external_labels("global: {}\n").unwrap().is_empty());
        assert!(parse_external_labels("global: [").is_err());
    }

    #[test]
    fn lowest_timestamp() {
        let t = "# HELP x\nprometheus_tsdb_lowest_timestamp 1\nprometheus_tsdb_lowest_timestamp_seconds 1.7e+09\n";
        assert_eq!(parse_lowest_timestamp(t), Some(1_700_000_000_000));
        assert_eq!(parse_lowest_timestamp("nothing"), None);
    }

    #[test]
    fn streamed_frames_are_checked() {
        let frame = ChunkedReadResponse {
            chunked_series: vec![pb::ChunkedSeries {
                labels: vec![pb::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                chunks: vec![pb::Chunk {
                    min_time_ms: 1,
                    max_time_ms: 2,
                    r#type: pb::chunk::Encoding::Xor as i32,
                    data: vec![0, 0].into(),
                }],
            }],
            query_index: 0,
        }
        .encode_to_vec();
        let mut b = vec![frame.len() as u8];
        b.extend(crc32c::crc32c(&frame).to_be_bytes());
        b.extend(&frame);
        let two = [b.clone(), b.clone()].concat();
        let s = decode_streamed(&two).unwrap();
        assert_eq!(s.len(), 1, "split series merged");
        assert_eq!(s[0].chunks.len(), 2);
        assert_eq!(s[0].chunks[0].raw.as_ref().unwrap().r#type, 0, "XOR is 0");
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_streamed(&bad).is_err());
        assert!(decode_streamed(&b[..b.len() - 1]).is_err());
        assert!(decode_streamed(&[0xff; 11]).is_err());
    }

    #[test]
    fn metadata_answers() {
        let v = serde_json::json!({
            "up": [{"type": "gauge", "help": "Up.", "unit": ""}],
            "x": [{"type": "counter", "help": "a"}, {"type": "gauge", "help": "b", "unit": "s"}]
        });
        let m = parse_metadata(v).unwrap();
        assert_eq!(m["up"][0].kind, "gauge");
        assert_eq!(m["x"].len(), 2);
        assert_eq!(m["x"][1].unit, "s");
        assert_eq!(m["x"][0].unit, "", "unit is optional");
        assert!(parse_metadata(serde_json::json!([1])).is_err());
        assert!(parse_metadata(serde_json::json!({"up": "gauge"})).is_err());
    }

    #[test]
    fn api_times_and_selectors() {
        assert_eq!(api_time(1500), "1.500");
        assert_eq!(api_time(-1500), "-1.500");
        assert_eq!(api_time(i64::MAX), "253402300799.000");
        let m = vec![
            Matcher::equal("a", "x\"y"),
            Matcher::new(MatchType::Regex, "b", "c.*").unwrap(),
        ];
        assert_eq!(selector(&m), r#"{a="x\"y",b=~"c.*"}"#);
    }
}
