//! Remote write in, PromQL and remote read out.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_proto::prometheus as pb;
use strata_tsdb::chunkenc::XorIter;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_then_query() {
    let s = TestServer::start(|_| {}).await;
    let t0 = now_ms() / 1000 * 1000 - 60_000;
    let req = write_request(vec![
        series(
            &[("__name__", "rw_metric"), ("job", "rw"), ("instance", "a")],
            &[(t0, 1.0), (t0 + 30_000, 2.0), (t0 + 60_000, 3.0)],
        ),
        series(
            &[("__name__", "rw_metric"), ("job", "rw"), ("instance", "b")],
            &[(t0, 10.0), (t0 + 60_000, 30.0)],
        ),
    ]);
    let (status, body, _) = s.post_snappy("/api/v1/write", &req).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    assert!(body.is_empty());

    let t_end = (t0 + 60_000) as f64 / 1000.0;
    let r = s.query("rw_metric{instance=\"a\"}", t_end).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["value"][1], "3");
    let r = s.query("sum(rw_metric)", t_end).await;
    assert_eq!(r[0]["value"][1], "33");

    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=30",
        urlenc("rw_metric{instance=\"a\"}"),
        t0 as f64 / 1000.0,
        t_end
    );
    let (status, v) = s.get_json(&path).await;
    assert_eq!(status, 200, "{v}");
    let values = v["data"]["result"][0]["values"].as_array().expect("matrix");
    let got: Vec<&str> = values.iter().map(|p| p[1].as_str().unwrap_or("")).collect();
    assert_eq!(got, ["1", "2", "3"]);

    // Out of order for `a`, and a new valid series in the same request:
    // 400 with the reason, while the valid samples are stored.
    let req = write_request(vec![
        series(
            &[("__name__", "rw_metric"), ("job", "rw"), ("instance", "a")],
            &[(t0 + 10_000, 9.0)],
        ),
        series(
            &[("__name__", "rw_other"), ("job", "rw")],
            &[(t0 + 60_000, 7.0)],
        ),
    ]);
    let (status, body, ct) = s.post_snappy("/api/v1/write", &req).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("out of order sample"), "{text}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let r = s.query("rw_other", t_end).await;
    assert_eq!(r.len(), 1, "the valid sample was stored");
    assert_eq!(r[0]["value"][1], "7");
    // Duplicate timestamp with another value is rejected too.
    let req = write_request(vec![series(
        &[("__name__", "rw_other"), ("job", "rw")],
        &[(t0 + 60_000, 8.0)],
    )]);
    let (status, body, _) = s.post_snappy("/api/v1/write", &req).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("duplicate sample for timestamp"));

    // Malformed bodies are 400.
    let resp = s
        .http
        .post(s.url("/api/v1/write"))
        .body(vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_receiver_disabled_is_404() {
    let s = TestServer::start(|o| o.enable_remote_write_receiver = false).await;
    let (status, body, _) = s.post_snappy("/api/v1/write", &write_request(vec![])).await;
    assert_eq!(status, 404);
    assert_eq!(String::from_utf8_lossy(&body), "404 page not found\n");
    s.stop().await;
}

fn to_map(ls: &[pb::Label]) -> BTreeMap<String, String> {
    ls.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_read_samples_and_streamed_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("strata.yml");
    std::fs::write(&cfg, "global:\n  external_labels:\n    cluster: c1\n").expect("write config");
    let s = TestServer::start(|o| o.config_file = Some(cfg.clone())).await;

    // 300 samples per series, 50 minutes: more than one chunk (chunks cut at
    // 120). They must sit inside one 2 h chunk range: a range boundary in the
    // middle changes where the head cuts chunks, so t0 depends on the clock.
    const RANGE: i64 = 7_200_000;
    let now = now_ms() / 1000 * 1000;
    let range_start = now / RANGE * RANGE;
    let t0 = if now - range_start >= 3_600_000 {
        range_start
    } else {
        range_start - RANGE + 600_000
    };
    let written: Vec<(i64, f64)> = (0..300)
        .map(|i| (t0 + i * 10_000, i as f64 * 1.5))
        .collect();
    let req = write_request(vec![
        series(&[("__name__", "rr"), ("job", "b")], &written),
        series(&[("__name__", "rr"), ("job", "a")], &written),
        series(&[("__name__", "other"), ("job", "a")], &written),
    ]);
    let (status, _, _) = s.post_snappy("/api/v1/write", &req).await;
    assert_eq!(status, 204);

    let end = t0 + 299 * 10_000;
    let query = |start: i64, end: i64| pb::Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers: vec![
            pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "rr".into(),
            },
            // Selecting on the external label works like on Prometheus.
            pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "cluster".into(),
                value: "c1".into(),
            },
        ],
        hints: None,
    };

    // SAMPLES (the default).
    let rr = pb::ReadRequest {
        queries: vec![query(t0, end), query(t0 + 100_000, t0 + 200_000)],
        accepted_response_types: vec![],
    };
    let (status, body, ct) = s.post_snappy("/api/v1/read", &rr).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/x-protobuf");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy");
    let resp = <pb::ReadResponse as prost::Message>::decode(raw.as_slice()).expect("decode");
    assert_eq!(resp.results.len(), 2);
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 2);
    // Sorted by labels, external labels merged in.
    assert_eq!(to_map(&ts[0].labels)["job"], "a");
    assert_eq!(to_map(&ts[1].labels)["job"], "b");
    assert_eq!(to_map(&ts[0].labels)["cluster"], "c1");
    let got: Vec<(i64, f64)> = ts[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(got, written);
    let ts = &resp.results[1].timeseries;
    assert_eq!(ts[0].samples.len(), 11, "second query honours its range");

    // STREAMED_XOR_CHUNKS.
    let rr = pb::ReadRequest {
        queries: vec![query(t0, end)],
        accepted_response_types: vec![pb::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let (status, body, ct) = s.post_snappy("/api/v1/read", &rr).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        ct,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let frames = decode_frames(&body);
    let mut by_job: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut order = Vec::new();
    for f in &frames {
        assert_eq!(f.query_index, 0);
        for cs in &f.chunked_series {
            let labels = to_map(&cs.labels);
            assert_eq!(labels["cluster"], "c1");
            let job = labels["job"].clone();
            if order.last() != Some(&job) {
                order.push(job.clone());
            }
            for c in &cs.chunks {
                assert_eq!(c.r#type, pb::chunk::Encoding::Xor as i32);
                let samples: Vec<(i64, f64)> = XorIter::new(&c.data).collect();
                assert_eq!(samples.first().map(|s| s.0), Some(c.min_time_ms));
                assert_eq!(samples.last().map(|s| s.0), Some(c.max_time_ms));
                by_job.entry(job.clone()).or_default().extend(samples);
            }
        }
    }
    assert_eq!(order, ["a", "b"], "series sorted by labels");
    assert_eq!(by_job["a"], written);
    assert_eq!(by_job["b"], written);

    // Small frames: every chunk gets its own frame, data stays the same.
    s.stop().await;
    let s = TestServer::start(|o| {
        o.storage_path = dir.path().join("data2");
        o.remote_read_max_bytes_in_frame = 64;
    })
    .await;
    let req = write_request(vec![series(&[("__name__", "rr"), ("job", "a")], &written)]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let mut q = query(t0, end);
    q.matchers.pop();
    let rr = pb::ReadRequest {
        queries: vec![q],
        accepted_response_types: vec![pb::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let (_, body, _) = s.post_snappy("/api/v1/read", &rr).await;
    let frames = decode_frames(&body);
    assert!(frames.len() >= 3, "{} frames", frames.len());
    let all: Vec<(i64, f64)> = frames
        .iter()
        .flat_map(|f| f.chunked_series.iter())
        .flat_map(|cs| {
            assert_eq!(cs.chunks.len(), 1);
            cs.chunks.iter()
        })
        .flat_map(|c| XorIter::new(&c.data).collect::<Vec<_>>())
        .collect();
    assert_eq!(all, written);

    // Unsupported response types only: 400.
    let rr = pb::ReadRequest {
        queries: vec![],
        accepted_response_types: vec![7],
    };
    assert_eq!(s.post_snappy("/api/v1/read", &rr).await.0, 400);
    s.stop().await;
}

/// One streamed chunk: `(min_time, max_time, samples)`.
type StreamedChunk = (i64, i64, Vec<(i64, f64)>);

/// Streamed chunks of one series.
fn streamed_chunks(body: &[u8]) -> Vec<StreamedChunk> {
    decode_frames(body)
        .iter()
        .flat_map(|f| f.chunked_series.iter())
        .flat_map(|cs| cs.chunks.iter())
        .map(|c| {
            (
                c.min_time_ms,
                c.max_time_ms,
                XorIter::new(&c.data).collect::<Vec<_>>(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_mostly_outside_the_window_are_cut_to_it() {
    let s = TestServer::start(|_| {}).await;
    let t0 = now_ms() / 1000 * 1000 - 3_600_000;
    // 300 samples at 10 s: head chunks of 120 samples (1190 s each).
    let written: Vec<(i64, f64)> = (0..300)
        .map(|i| (t0 + i * 10_000, (i * i) as f64 / 7.0))
        .collect();
    let req = write_request(vec![series(&[("__name__", "cut"), ("job", "a")], &written)]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let read = |start: i64, end: i64| pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "cut".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![pb::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let in_window = |a: i64, b: i64| -> Vec<(i64, f64)> {
        written
            .iter()
            .copied()
            .filter(|(t, _)| *t >= a && *t <= b)
            .collect()
    };

    // An instant query's 5 minutes: exactly the window's samples instead of
    // whole 120-sample chunks (two chunks if a chunk boundary falls inside).
    let (start, end) = (t0 + 1_500_000, t0 + 1_800_000);
    let (status, body, _) = s.post_snappy("/api/v1/read", &read(start, end)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let chunks = streamed_chunks(&body);
    assert!(!chunks.is_empty() && chunks.len() <= 2, "{chunks:?}");
    for (min, max, samples) in &chunks {
        assert!(*min >= start && *max <= end, "{chunks:?}");
        assert_eq!(samples.first().map(|s| s.0), Some(*min));
        assert_eq!(samples.last().map(|s| s.0), Some(*max));
    }
    let all: Vec<(i64, f64)> = chunks.iter().flat_map(|c| c.2.clone()).collect();
    assert_eq!(all, in_window(start, end));
    assert_eq!(all.len(), 31);

    // The stored layout: a window holding every sample ships every chunk
    // as stored (their boundaries depend on the head's chunk range).
    let (_, body, _) = s
        .post_snappy("/api/v1/read", &read(t0, t0 + 2_990_000))
        .await;
    let stored = streamed_chunks(&body);
    assert!(stored.len() >= 2, "{stored:?}");
    let all: Vec<(i64, f64)> = stored.iter().flat_map(|c| c.2.clone()).collect();
    assert_eq!(all, written);

    // Windows across every chunk boundary and over most of every chunk:
    // a chunk less than half inside comes cut to the window, any other
    // whole; together always exactly the window's samples (plus, for whole
    // chunks, their samples outside it).
    let mut windows: Vec<(i64, i64)> = stored
        .windows(2)
        .map(|w| (w[0].1 - 30_000, w[1].0 + 40_000))
        .collect();
    windows.push((t0 + 100_000, t0 + 2_900_000));
    for (start, end) in windows {
        let (_, body, _) = s.post_snappy("/api/v1/read", &read(start, end)).await;
        let got = streamed_chunks(&body);
        let mut inside = Vec::new();
        for (min, max, samples) in &got {
            let whole = stored.iter().find(|c| c.0 == *min && c.1 == *max);
            let kept = match whole {
                Some(c) => {
                    let span = c.1 - c.0;
                    let covered = c.1.min(end) - c.0.max(start);
                    assert!(
                        (*min >= start && *max <= end) || covered * 2 >= span,
                        "chunk [{min}, {max}] mostly outside [{start}, {end}] not cut"
                    );
                    assert_eq!(samples, &c.2);
                    samples.clone()
                }
                None => {
                    assert!(*min >= start && *max <= end, "cut chunk outside window");
                    samples.clone()
                }
            };
            inside.extend(kept.into_iter().filter(|(t, _)| *t >= start && *t <= end));
        }
        assert_eq!(inside, in_window(start, end), "window [{start}, {end}]");
    }

    // A window with no sample of a chunk it overlaps: nothing from it.
    let (start, end) = (t0 + 2_981_000, t0 + 2_989_000);
    let (_, body, _) = s.post_snappy("/api/v1/read", &read(start, end)).await;
    assert!(streamed_chunks(&body).is_empty());
    s.stop().await;
}

/// The receiver caches label bytes -> head series ref. A series that head
/// truncation removed since must still be writable: its stale ref makes the
/// append by ref fail and the receiver falls back to an append by labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_after_head_truncation_recreates_a_cached_series() {
    let s = TestServer::start(|_| {}).await;
    let now = now_ms() / 60_000 * 60_000;
    let start = now - 4 * 3_600_000;
    // 4 h of `long` make the head compactable; `gone` only has its first
    // half hour, so truncation after the block cut drops it from the head.
    let long: Vec<(i64, f64)> = (0..=240).map(|i| (start + i * 60_000, i as f64)).collect();
    let early: Vec<(i64, f64)> = (0..=30).map(|i| (start + i * 60_000, 1.0)).collect();
    let gone = [("__name__", "gone"), ("job", "c")];
    let req = write_request(vec![
        series(&[("__name__", "long"), ("job", "c")], &long),
        series(&gone, &early),
    ]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let db = s.server.db().clone();
    eventually(
        "`gone` truncated from the head",
        Duration::from_secs(20),
        || {
            let db = db.clone();
            async move { (!db.blocks().is_empty() && db.head().num_series() == 1).then_some(()) }
        },
    )
    .await;
    // Same label bytes as the cached entry, whose ref the head no longer knows.
    let req = write_request(vec![series(&gone, &[(now, 7.0)])]);
    let (status, body, _) = s.post_snappy("/api/v1/write", &req).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    assert_eq!(db.head().num_series(), 2);
    let r = s.query("gone", now as f64 / 1000.0).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["value"][1], "7");
    // And once more, now through the refreshed cache entry.
    let req = write_request(vec![series(&gone, &[(now + 15_000, 8.0)])]);
    assert_eq!(s.post_snappy("/api/v1/write", &req).await.0, 204);
    let r = s.query("gone", (now + 15_000) as f64 / 1000.0).await;
    assert_eq!(r[0]["value"][1], "8");
    drop(db);
    s.stop().await;
}
