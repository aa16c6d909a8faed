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
        let samples = (0..40)
            .map(|i| (base + i * 15_000, (k * 1000 + i) as f64 / 7.0))
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
    run(std::process::Command::new("kill")
        .arg("-TERM")
        .arg(p.0.id().to_string()));
    p.0.wait().unwrap();
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
    // And a read-write open (replay, new segment) sees the same.
    let (db, report) = Db::open(&data, DbOptions::default()).unwrap();
    assert_eq!(report.replayed_samples, 50 * 40);
    assert_eq!(
        db.select(&[Matcher::equal("job", "wal-test")], i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        50
    );
}
