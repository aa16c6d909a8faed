//! Interop with the real Prometheus 2.42 and promtool (Debian package).

use std::collections::BTreeMap;
use std::path::Path;

use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::Matcher;

use crate::common::*;

/// 7h of 15s samples for 12 counters and 7 gauges, starting off the 2h grid,
/// so the backfill produces partial and full 2h blocks.
fn input(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("in.om");
    std::fs::write(&p, openmetrics(1_700_001_000, 7, 15, 12)).unwrap();
    p
}

fn promtool_backfill(input: &Path, out: &Path) {
    run(promtool()
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(input)
        .arg(out));
}

/// Interop 1: blocks written by promtool read back sample for sample.
#[test]
fn promtool_blocks_read_identically() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path());
    let pt = d.path().join("promtool");
    promtool_backfill(&inp, &pt);
    let want = promtool_dump(&pt);
    assert!(want.lines().count() > 30_000, "fixture too small");
    assert_eq!(strata_dump(&pt), want);
}

/// Interop 2: blocks written by strata pass `promtool tsdb list` and
/// `analyze --extended`, and promtool dumps exactly the samples written.
#[test]
fn strata_blocks_pass_promtool() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path());
    let st = d.path().join("strata");
    let metas = backfill(&inp, &st);
    assert!(metas.len() >= 4);
    let list = run(promtool().args(["tsdb", "list"]).arg(&st));
    for m in &metas {
        assert!(
            list.contains(&m.ulid),
            "promtool list misses {}:\n{list}",
            m.ulid
        );
        let a = run(promtool()
            .args(["tsdb", "analyze", "--extended"])
            .arg(&st)
            .arg(&m.ulid));
        assert!(a.contains(&format!("Block ID: {}", m.ulid)), "{a}");
    }
    // strata's own analyze prints what promtool prints (promtool orders
    // ties randomly, so sections are compared as sets of lines).
    let m = &metas[1];
    let theirs = run(promtool()
        .args(["tsdb", "analyze", "--extended"])
        .arg(&st)
        .arg(&m.ulid));
    let mut ours = Vec::new();
    strata_tsdb::tools::analyze(&st, Some(&m.ulid), 20, true, &mut ours).unwrap();
    let sections = |s: &str| -> Vec<Vec<String>> {
        s.split("\n\n")
            .map(|sec| {
                let mut v: Vec<String> = sec.lines().map(str::to_string).collect();
                v.sort();
                v
            })
            .collect()
    };
    assert_eq!(
        sections(&String::from_utf8(ours).unwrap()),
        sections(&theirs)
    );
    let pt = d.path().join("promtool");
    promtool_backfill(&inp, &pt);
    // Both dumps are of the same written samples; and strata's own dump
    // prints the same lines.
    let theirs = promtool_dump(&st);
    assert_eq!(theirs, promtool_dump(&pt));
    assert_eq!(strata_dump(&st), theirs);
}

/// Interop 3: for the same input, `index` and `chunks/*` are byte-identical
/// to promtool's, block by block.
#[test]
fn backfill_is_byte_identical_to_promtool() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path());
    assert_byte_identical(d.path(), &inp);
}

/// The same over 30 h (16 block ranges): more ranges than one parse fills.
#[test]
fn backfill_over_many_ranges_is_byte_identical_to_promtool() {
    let d = tempfile::tempdir().unwrap();
    let inp = d.path().join("long.om");
    std::fs::write(&inp, openmetrics(1_700_000_000, 30, 60, 4)).unwrap();
    assert_byte_identical(d.path(), &inp);
}

fn assert_byte_identical(d: &Path, inp: &Path) {
    let (st, pt) = (d.join("strata"), d.join("promtool"));
    backfill(inp, &st);
    promtool_backfill(inp, &pt);
    let key = |b: &Path| {
        let m = strata_tsdb::meta::BlockMeta::read(b).unwrap();
        (m.min_time, m.max_time)
    };
    let ours: BTreeMap<_, _> = blocks_in(&st).into_iter().map(|b| (key(&b), b)).collect();
    let theirs: BTreeMap<_, _> = blocks_in(&pt).into_iter().map(|b| (key(&b), b)).collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (k, a) in &ours {
        let b = &theirs[k];
        for f in ["index", "chunks/000001", "tombstones"] {
            let (x, y) = (
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
            );
            assert!(
                x == y,
                "{f} of block {k:?} differs ({} vs {} bytes)",
                x.len(),
                y.len()
            );
        }
        let (ma, mb) = (
            strata_tsdb::meta::BlockMeta::read(a).unwrap(),
            strata_tsdb::meta::BlockMeta::read(b).unwrap(),
        );
        assert_eq!(ma.stats, mb.stats);
        assert_eq!(ma.compaction.level, mb.compaction.level);
    }
}

/// Interop 4: Prometheus 2.42 serving a data dir of strata-written blocks
/// answers with exactly the written data.
#[test]
fn prometheus_serves_strata_blocks() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path());
    let st = d.path().join("data");
    let metas = backfill(&inp, &st);
    let end_ms = metas.iter().map(|m| m.max_time).max().unwrap();
    let port = free_port();
    let _p = start_prometheus(&st, port);
    wait_ready(port);
    // A range selector as an instant query returns the raw samples.
    let q = format!(
        "/api/v1/query?query=%7B__name__%3D~%22reqs_total%7Cmem%22%7D%5B8h%5D&time={}",
        end_ms as f64 / 1000.0
    );
    let (status, body) = http(port, "GET", &q, &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut got = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let labels = s["metric"].as_object().unwrap();
        let key: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        let samples: Vec<(i64, f64)> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        got.insert(key.join(","), samples);
    }
    let db = Db::open_read_only(&st).unwrap();
    let all = db
        .select(
            &[Matcher::new(strata_tsdb::MatchType::Regex, "__name__", ".+").unwrap()],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(got.len(), all.len());
    for s in all {
        let key: Vec<String> = s
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        let want = s.samples(i64::MIN, i64::MAX).unwrap();
        let have = got
            .get(&key.join(","))
            .unwrap_or_else(|| panic!("{} missing", s.labels));
        assert_eq!(have.len(), want.len(), "{}", s.labels);
        for (a, b) in have.iter().zip(&want) {
            assert_eq!(a.0, b.0);
            assert!(
                a.1 == b.1 || (a.1 - b.1).abs() <= 1e-12 * b.1.abs(),
                "{} {a:?} vs {b:?}",
                s.labels
            );
        }
    }
}

/// Interop 5: a WAL written by Prometheus 2.42 (remote-written samples)
/// replays in strata with every sample.
#[test]
fn prometheus_wal_replays_in_strata() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("prom");
    let port = free_port();
    let mut p = start_prometheus(&data, port);
    wait_ready(port);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 10 * 60_000;
    let mut sent: Vec<WriteSeries> = Vec::new();
    for k in 0..50 {
        let labels = vec![
            ("__name__", "rw_metric".to_string()),
            ("idx", format!("{k:03}")),
            ("job", "wal-test".to_string()),
        ];
        // 300 samples: Prometheus cuts two full chunks per series into its
        // chunks_head/ files, which strata then loads.
        let samples = (0..300)
            .map(|i| (base + i * 2_000, (k * 1000 + i) as f64 / 7.0))
            .collect();
        sent.push((labels, samples));
    }
    for chunk in sent.chunks(10) {
        let body = remote_write_body(chunk);
        let (status, resp) = http(
            port,
            "POST",
            "/api/v1/write",
            &[
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            &body,
        );
        assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
    }
    // Stop Prometheus cleanly (SIGTERM): it does not cut a block on shutdown,
    // so the data is only in the WAL.
    p.terminate();
    assert!(blocks_in(&data).is_empty());
    let db = Db::open_read_only(&data).unwrap();
    let got = db
        .select(&[Matcher::equal("job", "wal-test")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), sent.len());
    for (s, (labels, samples)) in got.iter().zip(&sent) {
        let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let have: Vec<String> = s
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        assert_eq!(have, want);
        assert_eq!(&s.samples(i64::MIN, i64::MAX).unwrap(), samples);
    }
    // And a read-write open (replay, new segment) sees the same, taking the
    // full chunks from Prometheus' chunks_head/ files and only the rest from
    // the WAL.
    let (db, report) = Db::open(&data, DbOptions::default()).unwrap();
    assert!(report.head_chunks_repaired.is_none(), "{report:?}");
    assert!(report.mmapped_chunks >= 50, "{report:?}");
    assert!(report.replayed_samples < 50 * 300 / 2, "{report:?}");
    let got = db
        .select(&[Matcher::equal("job", "wal-test")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), 50);
    for (s, (_, samples)) in got.iter().zip(&sent) {
        assert_eq!(&s.samples(i64::MIN, i64::MAX).unwrap(), samples);
    }
}

/// Head chunk files written by strata are Prometheus' format: Prometheus
/// 2.42 started on a strata data directory without blocks (WAL +
/// chunks_head/) loads them without a corruption and answers with every
/// sample.
#[test]
fn prometheus_loads_strata_head_chunks() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 15 * 60_000;
    let want: Vec<(String, Vec<(i64, f64)>)> = {
        let (db, _) = Db::open(&data, DbOptions::default()).unwrap();
        for i in 0..300i64 {
            let mut app = db.appender();
            for k in 0..20 {
                let l = strata_tsdb::Labels::from_pairs([
                    ("__name__", "hc_metric".to_string()),
                    ("k", format!("{k:02}")),
                ]);
                app.append(&l, base + i * 2_000, (k * 1000 + i) as f64 / 3.0)
                    .unwrap();
            }
            app.commit().unwrap();
        }
        db.select(&[], i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s.labels.get("k").unwrap().to_string(),
                    s.samples(i64::MIN, i64::MAX).unwrap(),
                )
            })
            .collect()
    };
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let ours = files(&data.join("chunks_head"));
    assert_eq!(ours.len(), 1);
    assert!(ours[0].1.len() > 20 * 2 * 100, "{} bytes", ours[0].1.len());
    let port = free_port();
    let p = start_prometheus(&data, port);
    wait_ready(port);
    let (status, body) = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&body);
    let corruptions = metrics
        .lines()
        .find(|l| l.starts_with("prometheus_tsdb_mmap_chunk_corruptions_total "))
        .expect("corruption counter");
    assert!(corruptions.ends_with(" 0"), "{corruptions}");
    let q = format!(
        "/api/v1/query?query=hc_metric%5B30m%5D&time={}",
        now as f64 / 1000.0
    );
    let (status, body) = http(port, "GET", &q, &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut got: Vec<(String, Vec<(i64, f64)>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let samples = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            (s["metric"]["k"].as_str().unwrap().to_string(), samples)
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    drop(p);
    // Prometheus kept our file as it was (a corrupted one would be deleted).
    let after = files(&data.join("chunks_head"));
    assert_eq!(after[0], ours[0]);
}

/// One remote-write native histogram sample: integer or float counts.
enum RwHistogram {
    Int(strata_tsdb::chunkenc::histogram::Histogram),
    Float(strata_tsdb::chunkenc::histogram::FloatHistogram),
    /// Sent with the GAUGE reset hint.
    IntGauge(strata_tsdb::chunkenc::histogram::Histogram),
    FloatGauge(strata_tsdb::chunkenc::histogram::FloatHistogram),
}

/// Encodes a remote-write 1.0 request of histogram series (prompb
/// `TimeSeries.histograms`), snappy-compressed.
/// A histogram series to remote-write: labels sorted by name, samples.
type HistogramSeries<'a> = (Vec<(&'a str, String)>, Vec<(i64, RwHistogram)>);

fn histogram_write_body(series: &[HistogramSeries<'_>]) -> Vec<u8> {
    use strata_tsdb::chunkenc::histogram::Span;
    fn varint(b: &mut Vec<u8>, mut x: u64) {
        while x >= 0x80 {
            b.push((x as u8) | 0x80);
            x >>= 7;
        }
        b.push(x as u8);
    }
    fn key(b: &mut Vec<u8>, field: u64, wire: u64) {
        varint(b, (field << 3) | wire);
    }
    fn bytes(b: &mut Vec<u8>, field: u64, data: &[u8]) {
        key(b, field, 2);
        varint(b, data.len() as u64);
        b.extend_from_slice(data);
    }
    fn double(b: &mut Vec<u8>, field: u64, v: f64) {
        key(b, field, 1);
        b.extend_from_slice(&v.to_le_bytes());
    }
    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }
    fn spans(b: &mut Vec<u8>, field: u64, ss: &[Span]) {
        for s in ss {
            let mut m = Vec::new();
            key(&mut m, 1, 0);
            varint(&mut m, zigzag(i64::from(s.offset)));
            key(&mut m, 2, 0);
            varint(&mut m, u64::from(s.length));
            bytes(b, field, &m);
        }
    }
    fn deltas(b: &mut Vec<u8>, field: u64, ds: &[i64]) {
        if ds.is_empty() {
            return;
        }
        let mut m = Vec::new();
        for &d in ds {
            varint(&mut m, zigzag(d));
        }
        bytes(b, field, &m);
    }
    fn counts(b: &mut Vec<u8>, field: u64, cs: &[f64]) {
        if cs.is_empty() {
            return;
        }
        let m: Vec<u8> = cs.iter().flat_map(|c| c.to_le_bytes()).collect();
        bytes(b, field, &m);
    }
    let mut req = Vec::new();
    for (labels, samples) in series {
        let mut ts = Vec::new();
        for (n, v) in labels {
            let mut l = Vec::new();
            bytes(&mut l, 1, n.as_bytes());
            bytes(&mut l, 2, v.as_bytes());
            bytes(&mut ts, 1, &l);
        }
        for (t, h) in samples {
            let mut m = Vec::new();
            match h {
                RwHistogram::Int(h) | RwHistogram::IntGauge(h) => {
                    key(&mut m, 1, 0);
                    varint(&mut m, h.count);
                    double(&mut m, 3, h.sum);
                    key(&mut m, 4, 0);
                    varint(&mut m, zigzag(i64::from(h.schema)));
                    double(&mut m, 5, h.zero_threshold);
                    key(&mut m, 6, 0);
                    varint(&mut m, h.zero_count);
                    spans(&mut m, 8, &h.negative_spans);
                    deltas(&mut m, 9, &h.negative_buckets);
                    spans(&mut m, 11, &h.positive_spans);
                    deltas(&mut m, 12, &h.positive_buckets);
                }
                RwHistogram::Float(h) | RwHistogram::FloatGauge(h) => {
                    double(&mut m, 2, h.count);
                    double(&mut m, 3, h.sum);
                    key(&mut m, 4, 0);
                    varint(&mut m, zigzag(i64::from(h.schema)));
                    double(&mut m, 5, h.zero_threshold);
                    double(&mut m, 7, h.zero_count);
                    spans(&mut m, 8, &h.negative_spans);
                    counts(&mut m, 10, &h.negative_buckets);
                    spans(&mut m, 11, &h.positive_spans);
                    counts(&mut m, 13, &h.positive_buckets);
                }
            }
            if matches!(h, RwHistogram::IntGauge(_) | RwHistogram::FloatGauge(_)) {
                key(&mut m, 14, 0);
                varint(&mut m, 3);
            }
            key(&mut m, 15, 0);
            varint(&mut m, *t as u64);
            bytes(&mut ts, 4, &m);
        }
        bytes(&mut req, 1, &ts);
    }
    snap::raw::Encoder::new().compress_vec(&req).unwrap()
}

/// The spans of a histogram whose buckets sit at the sorted indexes `idx`.
fn spans_of(idx: &[i64]) -> Vec<strata_tsdb::chunkenc::histogram::Span> {
    use strata_tsdb::chunkenc::histogram::Span;
    let mut spans: Vec<Span> = Vec::new();
    let mut last: Option<i64> = None;
    for &x in idx {
        match last {
            Some(l) if x == l + 1 => spans.last_mut().unwrap().length += 1,
            Some(l) => spans.push(Span {
                offset: (x - l - 1) as i32,
                length: 1,
            }),
            None => spans.push(Span {
                offset: x as i32,
                length: 1,
            }),
        }
        last = Some(x);
    }
    spans
}

/// Starts Prometheus 2.42 with native histograms, the remote-write receiver
/// and the admin API on `<dir>/prom`. Returns the process, port and data dir.
fn start_prometheus_native_histograms(dir: &Path) -> (ChildGuard, u16, std::path::PathBuf) {
    let data = dir.join("prom");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.join("prom.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
    let port = free_port();
    let p = ChildGuard(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--web.enable-remote-write-receiver",
                "--web.enable-admin-api",
                "--enable-feature=native-histograms",
                "--log.level=warn",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    wait_ready(port);
    (p, port, data)
}

/// Remote-writes `series` to Prometheus on `port`.
fn remote_write_histograms(port: u16, series: &[HistogramSeries<'_>]) {
    let (status, resp) = http(
        port,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &histogram_write_body(series),
    );
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
}

/// Snapshots Prometheus' head into a block (admin API) and opens it.
fn snapshot_block(port: u16, data: &Path) -> std::sync::Arc<strata_tsdb::block::Block> {
    let (status, resp) = http(port, "POST", "/api/v1/admin/tsdb/snapshot", &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    let snap = data
        .join("snapshots")
        .join(v["data"]["name"].as_str().unwrap());
    let blocks = blocks_in(&snap);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    strata_tsdb::block::Block::open(&blocks[0]).unwrap()
}

/// Native histogram chunks (encodings 2 and 3) written by Prometheus 2.42:
/// remote-written integer and float histograms are snapshotted into a
/// block; strata decodes every sample exactly and, encoding the same samples
/// chunk by chunk, produces the same bytes.
#[test]
fn prometheus_histogram_chunks_decode_and_encode_identically() {
    use strata_tsdb::chunkenc::histogram::{
        counter_reset_header, FloatHistogram, FloatHistogramChunk, FloatHistogramIter, Histogram,
        HistogramChunk, HistogramIter, Span,
    };
    use strata_tsdb::chunkenc::Encoding;
    let d = tempfile::tempdir().unwrap();
    let (_p, port, data) = start_prometheus_native_histograms(d.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 20 * 60_000;
    // Counters only grow (no counter reset, no new buckets), so Prometheus
    // neither recodes nor cuts for a reset; 300 samples span several chunks.
    let n = 300i64;
    let int_h = |k: i64, i: i64| Histogram {
        schema: k as i32 - 1,
        zero_threshold: if k == 0 { 2f64.powi(-128) } else { 0.001 },
        zero_count: (2 + i * k) as u64,
        count: (2 + i * k + 4 * (1 + i) + 3 * i) as u64,
        sum: 1.5 * i as f64 + k as f64 / 7.0,
        positive_spans: vec![
            Span {
                offset: -1,
                length: 2,
            },
            Span {
                offset: 3,
                length: 1,
            },
        ],
        negative_spans: vec![Span {
            offset: 0,
            length: 1,
        }],
        // Absolute counts 1+i, 2+i, 1+2i: deltas between neighbours.
        positive_buckets: vec![1 + i, 1, i - 1],
        negative_buckets: vec![3 * i],
    };
    let float_h = |k: i64, i: i64| FloatHistogram {
        schema: 3,
        zero_threshold: 2f64.powi(-128),
        zero_count: 0.5 * i as f64 + 1.0,
        count: 3.25 * i as f64 + 10.0 + k as f64,
        sum: (i * i) as f64 / 3.0 - 7.0,
        positive_spans: vec![Span {
            offset: 1,
            length: 3,
        }],
        negative_spans: vec![],
        positive_buckets: vec![1.0 + i as f64, 0.25 * i as f64, 2.0 + i as f64 / 8.0],
        negative_buckets: vec![],
    };
    let mut series = Vec::new();
    for k in 0..3 {
        let labels = vec![("__name__", "nh_int".to_string()), ("k", k.to_string())];
        let s = (0..n)
            .map(|i| {
                (
                    base + i * 2_000 + (i % 4) * 3,
                    RwHistogram::Int(int_h(k, i)),
                )
            })
            .collect();
        series.push((labels, s));
        let labels = vec![("__name__", "nh_float".to_string()), ("k", k.to_string())];
        let s = (0..n)
            .map(|i| (base + i * 2_000, RwHistogram::Float(float_h(k, i))))
            .collect();
        series.push((labels, s));
    }
    remote_write_histograms(port, &series);
    let block = snapshot_block(port, &data);
    let got = block.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 6);
    let (mut int_chunks, mut float_chunks) = (0, 0);
    for s in &got {
        let k: i64 = s.labels.get("k").unwrap().parse().unwrap();
        let is_int = s.labels.get("__name__") == Some("nh_int");
        let mut i = 0i64;
        for c in &s.chunks {
            c.with_bytes(|enc, bytes| {
                let header = counter_reset_header(bytes).unwrap();
                if is_int {
                    assert_eq!(enc, Encoding::Histogram);
                    int_chunks += 1;
                    let mut it = HistogramIter::new(bytes);
                    let mut ours = HistogramChunk::new();
                    for (t, h) in it.by_ref() {
                        assert_eq!(t, base + i * 2_000 + (i % 4) * 3);
                        assert_eq!(h, int_h(k, i), "{} sample {i}", s.labels);
                        ours.append(t, &h).unwrap();
                        i += 1;
                    }
                    assert!(it.err().is_none(), "{:?}", it.err());
                    ours.set_counter_reset_header(header);
                    assert_eq!(ours.bytes(), bytes, "{} chunk ending at {i}", s.labels);
                } else {
                    assert_eq!(enc, Encoding::FloatHistogram);
                    float_chunks += 1;
                    let mut it = FloatHistogramIter::new(bytes);
                    let mut ours = FloatHistogramChunk::new();
                    for (t, h) in it.by_ref() {
                        assert_eq!(t, base + i * 2_000);
                        assert_eq!(h, float_h(k, i), "{} sample {i}", s.labels);
                        ours.append(t, &h).unwrap();
                        i += 1;
                    }
                    assert!(it.err().is_none(), "{:?}", it.err());
                    ours.set_counter_reset_header(header);
                    assert_eq!(ours.bytes(), bytes, "{} chunk ending at {i}", s.labels);
                }
            })
            .unwrap();
        }
        assert_eq!(i, n, "{}", s.labels);
        // The query-side view: every sample as a float histogram, in order.
        let fh = s.float_histograms(i64::MIN, i64::MAX).unwrap();
        assert_eq!(fh.len() as i64, n);
        for (j, (_, h)) in fh.iter().enumerate() {
            let want = if is_int {
                int_h(k, j as i64).to_float()
            } else {
                float_h(k, j as i64)
            };
            assert_eq!(h, &want, "{} sample {j}", s.labels);
        }
        assert!(s.samples(i64::MIN, i64::MAX).unwrap().is_empty());
    }
    assert!(
        int_chunks >= 6 && float_chunks >= 6,
        "{int_chunks} {float_chunks}"
    );
}

/// Prometheus recodes a histogram chunk when new buckets appear: strata's
/// `append_recoding`, fed the same samples chunk by chunk (chunk boundaries
/// taken from Prometheus' block), writes the same bytes, for integer and
/// float histograms.
#[test]
fn prometheus_histogram_recoding_is_reproduced() {
    use strata_tsdb::chunkenc::histogram::{
        counter_reset_header, FloatHistogram, FloatHistogramChunk, Histogram, HistogramChunk, Span,
    };
    let d = tempfile::tempdir().unwrap();
    let (_p, port, data) = start_prometheus_native_histograms(d.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 20 * 60_000;
    let n = 300i64;
    // Buckets appear over time: one before, one after a gap, then the gap
    // fills. Every bucket only grows, so nothing is a counter reset.
    let layout = |i: i64| -> (Vec<Span>, Vec<i64>) {
        let idx: Vec<i64> = match i {
            _ if i < 40 => vec![0, 1],
            _ if i < 90 => vec![-1, 0, 1],
            _ if i < 170 => vec![-1, 0, 1, 4],
            _ => vec![-1, 0, 1, 2, 3, 4],
        };
        (spans_of(&idx), idx)
    };
    let count = |i: i64, j: i64| (i + 1) * (j + 3);
    let int_h = |i: i64| {
        let (spans, idx) = layout(i);
        let abs: Vec<i64> = idx.iter().map(|&j| count(i, j)).collect();
        let mut prev = 0;
        let deltas = abs
            .iter()
            .map(|&a| {
                let d = a - prev;
                prev = a;
                d
            })
            .collect();
        Histogram {
            schema: 2,
            zero_threshold: 2f64.powi(-128),
            zero_count: i as u64,
            count: (abs.iter().sum::<i64>() + i) as u64,
            sum: 0.25 * i as f64,
            positive_spans: spans,
            negative_spans: vec![],
            positive_buckets: deltas,
            negative_buckets: vec![],
        }
    };
    let float_h = |i: i64| {
        let (spans, idx) = layout(i);
        let abs: Vec<f64> = idx.iter().map(|&j| count(i, j) as f64 / 4.0).collect();
        FloatHistogram {
            schema: -1,
            zero_threshold: 0.0,
            zero_count: 1.0,
            count: abs.iter().sum::<f64>() + 1.0,
            sum: 3.0 * i as f64,
            positive_spans: vec![],
            negative_spans: spans,
            positive_buckets: vec![],
            negative_buckets: abs,
        }
    };
    let ts = |i: i64| base + i * 2_000;
    let series = vec![
        (
            vec![("__name__", "nh_recode_int".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::Int(int_h(i))))
                .collect(),
        ),
        (
            vec![("__name__", "nh_recode_float".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::Float(float_h(i))))
                .collect(),
        ),
    ];
    remote_write_histograms(port, &series);
    let block = snapshot_block(port, &data);
    let got = block.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 2);
    let mut recoded_chunks = 0;
    for s in &got {
        let is_int = s.labels.get("__name__") == Some("nh_recode_int");
        let mut seen = 0;
        for c in &s.chunks {
            let inputs: Vec<i64> = (0..n)
                .filter(|&i| ts(i) >= c.min_time && ts(i) <= c.max_time)
                .collect();
            seen += inputs.len();
            let layouts: std::collections::BTreeSet<usize> =
                inputs.iter().map(|&i| layout(i).1.len()).collect();
            if layouts.len() > 1 {
                recoded_chunks += 1;
            }
            c.with_bytes(|_, bytes| {
                let header = counter_reset_header(bytes).unwrap();
                let ours = if is_int {
                    let mut ch = HistogramChunk::new();
                    for &i in &inputs {
                        ch.append_recoding(ts(i), &int_h(i)).unwrap();
                    }
                    ch.set_counter_reset_header(header);
                    ch.bytes().to_vec()
                } else {
                    let mut ch = FloatHistogramChunk::new();
                    for &i in &inputs {
                        ch.append_recoding(ts(i), &float_h(i)).unwrap();
                    }
                    ch.set_counter_reset_header(header);
                    ch.bytes().to_vec()
                };
                assert_eq!(
                    ours, bytes,
                    "{} chunk [{}, {}]",
                    s.labels, c.min_time, c.max_time
                );
            })
            .unwrap();
        }
        assert_eq!(seen as i64, n, "{}", s.labels);
    }
    assert!(recoded_chunks >= 2, "{recoded_chunks} chunks were recoded");
}

/// Gauge histograms (reset hint GAUGE): buckets come and go and counts fall;
/// Prometheus expands chunk and sample both ways. strata's `append_gauge`,
/// fed the same samples chunk by chunk, writes the same bytes, header
/// included. (Prometheus 2.42 cannot snapshot or compact gauge histogram
/// chunks: its re-encoding reports "unexpected counter reset". So the full
/// chunks are read from its `chunks_head/` files after a clean shutdown.)
#[test]
fn prometheus_gauge_histogram_chunks_are_reproduced() {
    use strata_tsdb::chunkenc::histogram::{
        FloatHistogram, FloatHistogramChunk, Histogram, HistogramChunk, Span,
    };
    let d = tempfile::tempdir().unwrap();
    let (mut p, port, data) = start_prometheus_native_histograms(d.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 20 * 60_000;
    let n = 260i64;
    // Bucket j of sample i exists when (i / 17 + j) % 3 != 0, for j in 0..6;
    // counts rise and fall.
    let buckets = |i: i64| -> (Vec<Span>, Vec<i64>) {
        let idx: Vec<i64> = (0..6).filter(|j| (i / 17 + j) % 3 != 0).collect();
        (spans_of(&idx), idx)
    };
    let value = |i: i64, j: i64| 1 + ((i * 7 + j * 13) % 11);
    let int_h = |i: i64| {
        let (spans, idx) = buckets(i);
        let abs: Vec<i64> = idx.iter().map(|&j| value(i, j)).collect();
        let mut prev = 0;
        let deltas = abs
            .iter()
            .map(|&a| {
                let d = a - prev;
                prev = a;
                d
            })
            .collect();
        Histogram {
            schema: 0,
            zero_threshold: 2f64.powi(-128),
            zero_count: (i % 5) as u64,
            count: (abs.iter().sum::<i64>() + i % 5) as u64,
            sum: (i % 9) as f64 - 4.0,
            positive_spans: vec![],
            negative_spans: spans,
            positive_buckets: vec![],
            negative_buckets: deltas,
        }
    };
    let float_h = |i: i64| {
        let (spans, idx) = buckets(i);
        let abs: Vec<f64> = idx.iter().map(|&j| value(i, j) as f64 / 2.0).collect();
        FloatHistogram {
            schema: 1,
            zero_threshold: 0.5,
            zero_count: 0.5 + (i % 3) as f64,
            count: abs.iter().sum::<f64>() + 0.5 + (i % 3) as f64,
            sum: -(i as f64),
            positive_spans: spans,
            negative_spans: vec![],
            positive_buckets: abs,
            negative_buckets: vec![],
        }
    };
    let ts = |i: i64| base + i * 3_000;
    let series = vec![
        (
            vec![("__name__", "nh_gauge_int".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::IntGauge(int_h(i))))
                .collect(),
        ),
        (
            vec![("__name__", "nh_gauge_float".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::FloatGauge(float_h(i))))
                .collect(),
        ),
    ];
    remote_write_histograms(port, &series);
    p.terminate();
    let (mapper, loaded) =
        strata_tsdb::head_chunks::ChunkDiskMapper::open(&data.join("chunks_head")).unwrap();
    assert!(loaded.repaired.is_none(), "{:?}", loaded.repaired);
    let (mut int_chunks, mut float_chunks) = (0, 0);
    for chunks in loaded.chunks.values() {
        for c in chunks {
            let inputs: Vec<i64> = (0..n)
                .filter(|&i| ts(i) >= c.min_time && ts(i) <= c.max_time)
                .collect();
            let (f, off) = mapper.file_for(c.chunk_ref).unwrap();
            let (enc, bytes) = f.chunk_at(off).unwrap();
            let ours = match enc {
                strata_tsdb::chunkenc::Encoding::Histogram => {
                    int_chunks += 1;
                    let mut ch = HistogramChunk::new();
                    for &i in &inputs {
                        ch.append_gauge(ts(i), &int_h(i)).unwrap();
                    }
                    ch.bytes().to_vec()
                }
                strata_tsdb::chunkenc::Encoding::FloatHistogram => {
                    float_chunks += 1;
                    let mut ch = FloatHistogramChunk::new();
                    for &i in &inputs {
                        ch.append_gauge(ts(i), &float_h(i)).unwrap();
                    }
                    ch.bytes().to_vec()
                }
                e => panic!("unexpected encoding {e}"),
            };
            assert_eq!(ours, bytes, "{enc} chunk [{}, {}]", c.min_time, c.max_time);
        }
    }
    assert!(
        int_chunks >= 1 && float_chunks >= 1,
        "{int_chunks} {float_chunks}"
    );
}

/// WAL histogram records (types 7 and 8) written by Prometheus 2.42 for
/// remote-written integer, float and gauge histograms: strata decodes every
/// sample exactly (hint included) and re-encodes each record to the same
/// bytes.
#[test]
fn prometheus_wal_histogram_records_decode_and_encode_identically() {
    use strata_tsdb::chunkenc::histogram::{FloatHistogram, Histogram, Span};
    use strata_tsdb::wal::record::{self, HINT_GAUGE};
    let d = tempfile::tempdir().unwrap();
    let (mut p, port, data) = start_prometheus_native_histograms(d.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 10 * 60_000;
    let int_h = |i: i64| Histogram {
        schema: 2,
        zero_threshold: 0.01,
        zero_count: i as u64,
        count: (i + 2 * (1 + i) + 3) as u64,
        sum: -2.5 * i as f64,
        positive_spans: vec![Span {
            offset: -3,
            length: 2,
        }],
        negative_spans: vec![Span {
            offset: 4,
            length: 1,
        }],
        positive_buckets: vec![1 + i, 0],
        negative_buckets: vec![3],
    };
    // Never all-zero counts: 2.42 takes a remote-write histogram whose float
    // count and zero count are both 0 for an integer one.
    let float_h = |i: i64| FloatHistogram {
        schema: -2,
        zero_threshold: 0.0,
        zero_count: 1.0,
        count: 1.5 * i as f64 + 1.0,
        sum: i as f64 / 3.0,
        positive_spans: vec![Span {
            offset: 0,
            length: 1,
        }],
        negative_spans: vec![],
        positive_buckets: vec![1.5 * i as f64],
        negative_buckets: vec![],
    };
    let series: Vec<HistogramSeries<'_>> = vec![
        (
            vec![("__name__", "wal_int".to_string())],
            (0..40)
                .map(|i| (base + i * 1_000, RwHistogram::Int(int_h(i))))
                .collect(),
        ),
        (
            vec![("__name__", "wal_float".to_string())],
            (0..40)
                .map(|i| (base + i * 1_000, RwHistogram::Float(float_h(i))))
                .collect(),
        ),
        (
            vec![("__name__", "wal_gauge".to_string())],
            (0..40)
                .map(|i| (base + i * 1_000, RwHistogram::IntGauge(int_h(40 - i))))
                .collect(),
        ),
    ];
    remote_write_histograms(port, &series);
    p.terminate();

    let mut r =
        strata_tsdb::wal::reader::WalReader::open_segments(&data.join("wal"), 0, None).unwrap();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    let mut got_int: BTreeMap<String, Vec<(i64, u8, Histogram)>> = BTreeMap::new();
    let mut got_float: Vec<(i64, u8, FloatHistogram)> = Vec::new();
    let mut records = 0;
    while let Some(rec) = r.next_record().unwrap() {
        match rec[0] {
            record::SERIES => {
                for s in record::decode_series(&rec).unwrap() {
                    names.insert(s.series_ref, s.labels.get("__name__").unwrap().to_string());
                }
            }
            record::HISTOGRAM_SAMPLES => {
                records += 1;
                let hs = record::decode_histograms(&rec).unwrap();
                let mut again = Vec::new();
                record::encode_histograms(&hs, &mut again);
                assert_eq!(again, rec);
                for s in hs {
                    got_int
                        .entry(names[&s.series_ref].clone())
                        .or_default()
                        .push((s.t, s.hint, s.h));
                }
            }
            record::FLOAT_HISTOGRAM_SAMPLES => {
                records += 1;
                let hs = record::decode_float_histograms(&rec).unwrap();
                let mut again = Vec::new();
                record::encode_float_histograms(&hs, &mut again);
                assert_eq!(again, rec);
                for s in hs {
                    assert_eq!(names[&s.series_ref], "wal_float");
                    got_float.push((s.t, s.hint, s.h));
                }
            }
            _ => {}
        }
    }
    assert!(records >= 2, "{records} histogram records");
    let want_int: Vec<_> = (0..40).map(|i| (base + i * 1_000, 0, int_h(i))).collect();
    assert_eq!(got_int["wal_int"], want_int);
    let want_gauge: Vec<_> = (0..40)
        .map(|i| (base + i * 1_000, HINT_GAUGE, int_h(40 - i)))
        .collect();
    assert_eq!(got_int["wal_gauge"], want_gauge);
    let want_float: Vec<_> = (0..40).map(|i| (base + i * 1_000, 0, float_h(i))).collect();
    assert_eq!(got_float, want_float);
}

/// strata's head cuts histogram chunks where Prometheus 2.42's head does,
/// with the same counter reset headers and bytes: the same samples (new
/// buckets → recoding, a counter reset, a schema change, more than 120
/// samples → size cuts; integer, float and gauge series) go to Prometheus by
/// remote write and to a strata `Db` by `append_histogram`; every full chunk
/// Prometheus wrote to `chunks_head/` equals strata's chunk at that place.
#[test]
fn head_cuts_histogram_chunks_as_prometheus() {
    use strata_tsdb::chunkenc::histogram::{counter_reset_header, Histogram, Span};
    use strata_tsdb::head::HistogramValue;
    use strata_tsdb::wal::record;
    let d = tempfile::tempdir().unwrap();
    let (mut p, port, data) = start_prometheus_native_histograms(d.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let n = 400i64;
    // The 20 minutes of samples start 5 minutes into a 2h chunk range, so
    // no range boundary (where both TSDBs cut a chunk by time, replacing
    // the size cut that gives the NotCounterReset header) falls among
    // them, whatever the time of day: from 25 minutes to 2h25m ago.
    const RANGE: i64 = 2 * 3_600_000;
    let base = (now - 30 * 60_000) / RANGE * RANGE + 5 * 60_000;
    let ts = |i: i64| base + i * 3_000;
    let int_h = |i: i64| {
        // Counter resets at 150; a new bucket from 40 on; schema 1 → 0
        // (a layout recoding cannot follow) at 260.
        let j = if i >= 150 { i - 150 } else { i } + 1;
        let mut buckets = vec![j, j, 2 * j];
        let mut spans = vec![Span {
            offset: 0,
            length: 3,
        }];
        if i >= 40 {
            buckets.push(j);
            spans.push(Span {
                offset: 2,
                length: 1,
            });
        }
        let mut deltas = Vec::new();
        let mut prev = 0;
        for b in &buckets {
            deltas.push(b - prev);
            prev = *b;
        }
        Histogram {
            schema: if i >= 260 { 0 } else { 1 },
            zero_threshold: 0.001,
            zero_count: j as u64,
            count: (j + buckets.iter().sum::<i64>()) as u64,
            sum: 1.25 * j as f64,
            positive_spans: spans,
            negative_spans: vec![],
            positive_buckets: deltas,
            negative_buckets: vec![],
        }
    };
    let float_h = |i: i64| int_h(i).to_float();
    // A gauge: counts go down and up.
    let gauge_h = |i: i64| int_h(if i % 20 < 10 { i } else { 20 - i % 20 });
    let series: Vec<HistogramSeries<'_>> = vec![
        (
            vec![("__name__", "cut_int".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::Int(int_h(i))))
                .collect(),
        ),
        (
            vec![("__name__", "cut_float".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::Float(float_h(i))))
                .collect(),
        ),
        (
            vec![("__name__", "cut_gauge".to_string())],
            (0..n)
                .map(|i| (ts(i), RwHistogram::IntGauge(gauge_h(i))))
                .collect(),
        ),
    ];
    remote_write_histograms(port, &series);
    p.terminate();

    // Prometheus' full chunks by metric name.
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    let mut r =
        strata_tsdb::wal::reader::WalReader::open_segments(&data.join("wal"), 0, None).unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        if rec[0] == record::SERIES {
            for s in record::decode_series(&rec).unwrap() {
                names.insert(s.series_ref, s.labels.get("__name__").unwrap().to_string());
            }
        }
    }
    let (mapper, loaded) =
        strata_tsdb::head_chunks::ChunkDiskMapper::open(&data.join("chunks_head")).unwrap();
    assert!(loaded.repaired.is_none(), "{:?}", loaded.repaired);

    // The same samples into strata's head.
    let ours_dir = d.path().join("strata");
    let (db, _) = Db::open(&ours_dir, DbOptions::default()).unwrap();
    let mut app = db.appender();
    for i in 0..n {
        let l = |name: &str| strata_tsdb::Labels::from_pairs([("__name__", name)]);
        app.append_histogram(&l("cut_int"), ts(i), HistogramValue::Int(int_h(i)), false)
            .unwrap();
        app.append_histogram(
            &l("cut_float"),
            ts(i),
            HistogramValue::Float(float_h(i)),
            false,
        )
        .unwrap();
        app.append_histogram(
            &l("cut_gauge"),
            ts(i),
            HistogramValue::Int(gauge_h(i)),
            true,
        )
        .unwrap();
    }
    app.commit().unwrap();
    let got = db.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 3);

    let mut compared = 0;
    let mut headers = std::collections::BTreeSet::new();
    for (sref, chunks) in &loaded.chunks {
        let name = &names[sref];
        let ours = got
            .iter()
            .find(|s| s.labels.get("__name__") == Some(name.as_str()))
            .unwrap();
        for (k, c) in chunks.iter().enumerate() {
            let (f, off) = mapper.file_for(c.chunk_ref).unwrap();
            let (enc, theirs) = f.chunk_at(off).unwrap();
            let o = &ours.chunks[k];
            assert_eq!(
                (o.min_time, o.max_time, o.encoding),
                (c.min_time, c.max_time, enc),
                "{name} chunk {k}"
            );
            o.with_bytes(|_, bytes| assert_eq!(bytes, theirs, "{name} chunk {k}"))
                .unwrap();
            headers.insert(format!("{:?}", counter_reset_header(theirs).unwrap()));
            compared += 1;
        }
    }
    // Every kind of cut happened.
    assert!(compared >= 9, "{compared} chunks compared");
    for h in ["CounterReset", "NotCounterReset", "Unknown", "Gauge"] {
        assert!(headers.contains(h), "no {h} header among {headers:?}");
    }
}
