//! The backfill writes complete 2h blocks: read back by our block reader
//! with the expected series, time ranges and values, and by the real
//! promtool (`tsdb analyze`).

use std::process::Command;
use std::sync::atomic::AtomicBool;

use strata_demo::backfill::{backfill, series_of, Plan, BLOCK_MS};
use strata_demo::model::Cluster;
use strata_tsdb::block::Block;
use strata_tsdb::db::Db;
use strata_tsdb::Matcher;

#[test]
fn backfilled_blocks_hold_every_series_at_every_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::new(1);
    // 2h30m ending 45m into a 2h block: the last 1h45m of the previous
    // block range, then 45m of the current one.
    let end = 1_780_000_000_000 - 1_780_000_000_000 % BLOCK_MS + 45 * 60 * 1000;
    let plan = Plan {
        start_ms: end - 150 * 60 * 1000,
        end_ms: end,
        interval_ms: 15_000,
    };
    let mut seen = Vec::new();
    let metas = backfill(
        &cluster,
        dir.path(),
        plan,
        &AtomicBool::new(false),
        &mut |m, done, total| {
            seen.push((m.ulid.clone(), done, total));
        },
    )
    .expect("backfill");
    assert_eq!(metas.len(), 2, "{metas:?}");
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[1].1, seen[1].2), (2, 2));

    let n_series = series_of(&cluster).len();
    let stamps: Vec<i64> = plan.timestamps().collect();
    assert_eq!(stamps.len(), 600);
    let mut total_samples = 0;
    for m in &metas {
        let b = Block::open(&dir.path().join(&m.ulid)).expect("open block");
        assert_eq!(b.meta().stats.num_series as usize, n_series);
        let in_block: Vec<&i64> = stamps
            .iter()
            .filter(|t| **t >= b.min_time() && **t < b.max_time())
            .collect();
        assert_eq!(b.min_time(), *in_block[0]);
        assert_eq!(b.max_time(), *in_block[in_block.len() - 1] + 1);
        assert_eq!(
            b.meta().stats.num_samples as usize,
            n_series * in_block.len()
        );
        // No block crosses the 2h grid.
        assert_eq!(
            b.min_time().div_euclid(BLOCK_MS),
            (b.max_time() - 1).div_euclid(BLOCK_MS)
        );
        total_samples += b.meta().stats.num_samples as usize;
    }
    assert_eq!(total_samples, n_series * stamps.len());

    // Values read back equal the model's, with the target labels attached.
    let db = Db::open_read_only(dir.path()).expect("open db");
    let ms = [
        Matcher::equal("__name__", "apiserver_request_total"),
        Matcher::equal("verb", "GET"),
        Matcher::equal("resource", "pods"),
        Matcher::equal("code", "200"),
    ];
    let got = db.select(&ms, i64::MIN, i64::MAX).expect("select");
    assert_eq!(got.len(), 1);
    let labels = &got[0].labels;
    assert_eq!(labels.get("job"), Some("apiserver"));
    assert!(labels.get("instance").is_some_and(|i| i.ends_with(":6443")));
    let model = series_of(&cluster)
        .into_iter()
        .find(|(l, _)| l == labels)
        .expect("series in model")
        .1;
    let samples = got[0].samples(i64::MIN, i64::MAX).expect("decode");
    assert_eq!(samples.len(), stamps.len());
    for (t, v) in samples {
        assert_eq!(v, model.at(t as f64 / 1000.0), "at {t}");
    }
}

#[test]
fn promtool_analyzes_the_backfilled_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::new(2);
    let end = 1_780_000_000_000;
    let plan = Plan {
        start_ms: end - 3600 * 1000,
        end_ms: end,
        interval_ms: 15_000,
    };
    let metas = backfill(
        &cluster,
        dir.path(),
        plan,
        &AtomicBool::new(false),
        &mut |_, _, _| {},
    )
    .expect("backfill");
    assert!(!metas.is_empty());
    for m in &metas {
        let out = Command::new("promtool")
            .args(["tsdb", "analyze"])
            .arg(dir.path())
            .arg(&m.ulid)
            .output()
            .expect(
                "promtool must be installed (scripts/test.sh installs Debian's prometheus package)",
            );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("Series: "))
            .unwrap_or_else(|| panic!("no series count in:\n{text}"));
        assert_eq!(
            total.trim().parse::<usize>().expect("number"),
            series_of(&cluster).len()
        );
        assert!(text.contains(&format!("Block ID: {}", m.ulid)), "{text}");
    }
}

#[test]
fn a_set_cancel_flag_stops_the_backfill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Plan {
        start_ms: 0,
        end_ms: 3600 * 1000,
        interval_ms: 15_000,
    };
    let err = backfill(
        &Cluster::new(1),
        dir.path(),
        plan,
        &AtomicBool::new(true),
        &mut |_, _, _| {},
    )
    .expect_err("cancelled");
    assert!(matches!(err, strata_demo::Error::Interrupted), "{err}");
}
