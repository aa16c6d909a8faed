//! Leveled compaction (max block duration > min block duration): blocks are
//! merged into 3x ranges with their parents recorded, the result reads back
//! identically in strata and promtool, and an interrupted compaction is
//! repaired on open.

use std::path::Path;

use strata_tsdb::block::TMP_CREATION_SUFFIX;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::Labels;
use strata_tsdb::meta::BlockMeta;

use crate::common::{blocks_in, promtool, promtool_dump, run, strata_dump};

const H: i64 = 3_600_000;

fn opts(max_hours: i64) -> DbOptions {
    DbOptions {
        min_block_duration: 2 * H,
        max_block_duration: max_hours * H,
        ..DbOptions::default()
    }
}

/// Appends `hours` of 10 series at 60 s from `from_h`, running the
/// database's compaction every simulated hour as the server's loop does.
fn fill(db: &Db, from_h: i64, hours: i64) {
    let ls: Vec<Labels> = (0..10)
        .map(|k| Labels::from_pairs([("__name__", "m".to_string()), ("k", k.to_string())]))
        .collect();
    let mut refs = vec![0u64; ls.len()];
    for step in from_h * 60..(from_h + hours) * 60 {
        let t = step * 60_000;
        let mut app = db.appender();
        for (k, l) in ls.iter().enumerate() {
            let v = (step * (k as i64 + 1)) as f64 / 4.0;
            // Alternate both append paths; refs go stale when the head is
            // truncated, which the by-ref path must report, not mis-append.
            match app.append_ref(refs[k], t, v) {
                Ok(()) => {}
                Err(strata_tsdb::Error::UnknownSeriesRef(_)) => {
                    refs[k] = app.append(l, t, v).unwrap();
                }
                Err(e) => panic!("append: {e}"),
            }
        }
        app.commit().unwrap();
        if step % 60 == 59 {
            db.compact().unwrap();
        }
    }
}

fn metas(dir: &Path) -> Vec<BlockMeta> {
    let mut m: Vec<BlockMeta> = blocks_in(dir)
        .iter()
        .map(|d| BlockMeta::read(d).unwrap())
        .collect();
    m.sort_by_key(|m| m.min_time);
    m
}

fn assert_no_overlaps(ms: &[BlockMeta]) {
    for w in ms.windows(2) {
        assert!(
            w[0].max_time <= w[1].min_time,
            "{} [{}, {}) overlaps {} [{}, {})",
            w[0].ulid,
            w[0].min_time,
            w[0].max_time,
            w[1].ulid,
            w[1].min_time,
            w[1].max_time
        );
    }
}

/// Copies the block directories of `from` into a fresh `to` (no WAL), for
/// promtool, whose dump helper removes the WAL directory.
fn copy_blocks(from: &Path, to: &Path) {
    for b in blocks_in(from) {
        let dst = to.join(b.file_name().unwrap());
        copy_dir(&b, &dst);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn blocks_are_merged_into_three_times_ranges() {
    let d = tempfile::tempdir().unwrap();
    let (leveled, flat) = (d.path().join("leveled"), d.path().join("flat"));
    let (db, _) = Db::open(&leveled, opts(18)).unwrap();
    fill(&db, 0, 40);
    let (reference, _) = Db::open(&flat, opts(2)).unwrap();
    fill(&reference, 0, 40);
    drop((db, reference));

    let ms = metas(&leveled);
    assert_no_overlaps(&ms);
    // [0, 18h) holds three 6h level-2 blocks merged into one of level 3.
    let top = &ms[0];
    assert_eq!((top.min_time, top.max_time), (0, 18 * H), "{ms:#?}");
    assert_eq!(top.compaction.level, 3);
    assert_eq!(top.compaction.parents.len(), 3);
    assert_eq!(top.compaction.sources.len(), 9);
    for p in &top.compaction.parents {
        assert_eq!(p.max_time - p.min_time, 6 * H);
        assert!(!leveled.join(&p.ulid).exists(), "parent {} kept", p.ulid);
    }
    // Every source was a 2h block of the flat layout's kind.
    let flat_ms = metas(&flat);
    assert!(flat_ms.iter().all(|m| m.compaction.level == 1));
    // Blocks are only ever 2h, 6h or 18h long, each of its level.
    for m in &ms {
        let want_level = match m.max_time - m.min_time {
            x if x == 2 * H => 1,
            x if x == 6 * H => 2,
            x if x == 18 * H => 3,
            x => panic!("block {} spans {x} ms", m.ulid),
        };
        assert_eq!(m.compaction.level, want_level, "{}", m.ulid);
    }
    // Same samples either way, blocks plus head.
    let want = strata_dump(&flat);
    assert!(want.lines().count() > 20_000);
    assert_eq!(strata_dump(&leveled), want);

    // promtool reads the merged blocks: list, analyze, and the same samples.
    let blocks_only = d.path().join("blocks");
    copy_blocks(&leveled, &blocks_only);
    let list = run(promtool().args(["tsdb", "list"]).arg(&blocks_only));
    assert!(list.contains(&top.ulid), "{list}");
    let a = run(promtool()
        .args(["tsdb", "analyze", "--extended"])
        .arg(&blocks_only)
        .arg(&top.ulid));
    assert!(a.contains(&format!("Block ID: {}", top.ulid)), "{a}");
    let ours = strata_dump(&blocks_only);
    assert_eq!(promtool_dump(&blocks_only), ours);
}

#[test]
fn interrupted_compaction_is_repaired_on_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("db");
    // 2h blocks only, then a copy of that state.
    let (db, _) = Db::open(&dir, opts(2)).unwrap();
    fill(&db, 0, 12);
    drop(db);
    let before = d.path().join("before");
    copy_dir(&dir, &before);
    let want = strata_dump(&dir);
    let sources = metas(&dir);
    assert!(sources.len() >= 4, "{sources:#?}");

    // Crash while writing: a half-written block under its temporary name.
    // The sources are untouched; open removes the leftover.
    let tmp = dir.join(format!("01ARZ3NDEKTSV4RRFFQ69G5FAV{TMP_CREATION_SUFFIX}"));
    std::fs::create_dir_all(tmp.join("chunks")).unwrap();
    std::fs::write(tmp.join("chunks/000001"), b"partial").unwrap();
    let (db, report) = Db::open(&dir, opts(6)).unwrap();
    assert_eq!(report.removed_tmp_dirs, vec![tmp.clone()]);
    assert!(report.removed_parent_blocks.is_empty());
    assert_eq!(report.blocks, sources.len());
    db.compact().unwrap();
    drop(db);
    let merged = metas(&dir);
    assert_no_overlaps(&merged);
    let child = merged
        .iter()
        .find(|m| m.compaction.level == 2)
        .expect("a merged block");
    assert_eq!(strata_dump(&dir), want);

    // Crash after the merged block was renamed into place but before its
    // parents were deleted: both are on disk.
    for p in &child.compaction.parents {
        copy_dir(&before.join(&p.ulid), &dir.join(&p.ulid));
    }
    let (db, report) = Db::open(&dir, opts(6)).unwrap();
    let mut removed = report.removed_parent_blocks.clone();
    removed.sort();
    let mut parents: Vec<String> = child
        .compaction
        .parents
        .iter()
        .map(|p| p.ulid.clone())
        .collect();
    parents.sort();
    assert_eq!(removed, parents);
    assert_eq!(db.blocks().len(), merged.len());
    drop(db);
    assert_no_overlaps(&metas(&dir));
    assert_eq!(strata_dump(&dir), want);
}

#[test]
fn failed_compaction_marks_the_parents_and_the_planner_skips_them() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("db");
    let (db, _) = Db::open(&dir, opts(2)).unwrap();
    fill(&db, 0, 12);
    drop(db);
    let sources = metas(&dir);
    assert!(sources.len() >= 4, "{sources:#?}");
    // Flip a byte inside the data of the [2h, 4h) block's first chunk:
    // merging [0h, 6h) must fail on its CRC.
    let bad = sources
        .iter()
        .find(|m| m.min_time == 2 * H)
        .expect("a [2h, 4h) block");
    let seg = dir.join(&bad.ulid).join("chunks").join("000001");
    let mut b = std::fs::read(&seg).unwrap();
    b[8 + 4] ^= 0xff;
    std::fs::write(&seg, &b).unwrap();

    let (db, _) = Db::open(&dir, opts(6)).unwrap();
    let err = db.compact().unwrap_err().to_string();
    assert!(err.contains("000001"), "{err}");
    let after = metas(&dir);
    // Nothing merged, nothing lost; the three parents are marked.
    assert_eq!(after.len(), sources.len());
    let marked: Vec<(i64, i64)> = after
        .iter()
        .filter(|m| m.compaction.failed)
        .map(|m| (m.min_time, m.max_time))
        .collect();
    assert_eq!(marked, vec![(0, 2 * H), (2 * H, 4 * H), (4 * H, 6 * H)]);
    let raw = std::fs::read_to_string(dir.join(&bad.ulid).join("meta.json")).unwrap();
    assert!(raw.contains("\"failed\": true"), "{raw}");
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
    // The planner skips the marked range now, in this process and after a
    // restart: compaction succeeds and leaves those blocks alone.
    db.compact().unwrap();
    drop(db);
    let (db, _) = Db::open(&dir, opts(6)).unwrap();
    db.compact().unwrap();
    drop(db);
    let last = metas(&dir);
    for m in &after {
        if m.compaction.failed {
            assert!(last.iter().any(|x| x.ulid == m.ulid), "{} gone", m.ulid);
        }
    }
}

/// Native histograms through head compaction with a deleted range: the
/// series must be re-encoded (tombstones), and its histograms survive as
/// histogram chunks — integer counters (new bucket, counter reset) and a
/// float gauge — exactly, minus the deleted range; promtool reads the block.
#[test]
fn histograms_survive_compaction_with_tombstones() {
    use strata_tsdb::chunkenc::histogram::{FloatHistogram, Histogram, Span};
    use strata_tsdb::head::HistogramValue;
    use strata_tsdb::series::ResetHint;
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(d.path(), opts(2)).unwrap();
    let int_h = |i: i64| {
        let j = if i >= 100 { i - 100 } else { i } + 1;
        let mut spans = vec![Span {
            offset: 0,
            length: 2,
        }];
        let mut deltas = vec![j, 0];
        if i >= 50 {
            spans.push(Span {
                offset: 1,
                length: 1,
            });
            deltas.push(-j / 2);
        }
        let buckets: i64 = if i >= 50 { 2 * j + (j - j / 2) } else { 2 * j };
        Histogram {
            schema: 2,
            zero_threshold: 0.001,
            zero_count: 1,
            count: (1 + buckets) as u64,
            sum: j as f64 * 0.5,
            positive_spans: spans,
            negative_spans: vec![],
            positive_buckets: deltas,
            negative_buckets: vec![],
        }
    };
    let gauge_h = |i: i64| int_h(i % 7 * 3).to_float();
    let li = Labels::from_pairs([("__name__", "hi")]);
    let lg = Labels::from_pairs([("__name__", "hg")]);
    // 4h at 60 s; the compaction cuts [0, 2h) into a block.
    for i in 0..240 {
        let mut app = db.appender();
        app.append_histogram(&li, i * 60_000, HistogramValue::Int(int_h(i)), false)
            .unwrap();
        app.append_histogram(&lg, i * 60_000, HistogramValue::Float(gauge_h(i)), true)
            .unwrap();
        app.commit().unwrap();
    }
    let (from, to) = (H, H + 10 * 60_000);
    assert_eq!(
        db.delete(&[strata_tsdb::Matcher::equal("__name__", "hi")], from, to)
            .unwrap(),
        1
    );
    let metas = db.compact().unwrap();
    assert!(!metas.is_empty());
    let block = db.blocks()[0].clone();
    assert_eq!((block.min_time(), block.max_time()), (0, 2 * H));
    let got = block.select(&[], 0, 2 * H - 1).unwrap();
    assert_eq!(got.len(), 2);
    for s in &got {
        let is_int = s.labels.get("__name__") == Some("hi");
        let hs = s.histogram_samples(0, 2 * H - 1).unwrap();
        let want: Vec<(i64, _)> = (0..120)
            .map(|i| i * 60_000)
            .filter(|t| !is_int || *t < from || *t > to)
            .map(|t| {
                let i = t / 60_000;
                (
                    t,
                    if is_int {
                        int_h(i).to_float()
                    } else {
                        gauge_h(i)
                    },
                )
            })
            .collect();
        let have: Vec<(i64, _)> = hs.iter().map(|h| (h.t, h.h.clone())).collect();
        // Recoding (a new bucket) gives earlier samples of the chunk that
        // bucket with count 0, as Prometheus does: compare the populated
        // buckets, not the spelling.
        let norm = |v: &[(i64, FloatHistogram)]| -> Vec<_> {
            v.iter()
                .map(|(t, h)| {
                    let mut idx = 0i32;
                    let mut k = 0;
                    let mut buckets = Vec::new();
                    for (n, sp) in h.positive_spans.iter().enumerate() {
                        idx = if n == 0 { sp.offset } else { idx + sp.offset };
                        for _ in 0..sp.length {
                            if h.positive_buckets[k] != 0.0 {
                                buckets.push((idx, h.positive_buckets[k]));
                            }
                            idx += 1;
                            k += 1;
                        }
                    }
                    (
                        *t,
                        h.schema,
                        h.count,
                        h.zero_count,
                        h.sum.to_bits(),
                        buckets,
                    )
                })
                .collect()
        };
        assert_eq!(norm(&have), norm(&want), "{}", s.labels);
        if !is_int {
            assert!(hs.iter().all(|h| h.hint == ResetHint::Gauge));
        } else {
            // The reset at i = 100 is known from its chunk header.
            let reset = hs.iter().find(|h| h.t == 100 * 60_000).unwrap();
            assert_eq!(reset.hint, ResetHint::CounterReset);
        }
    }
    let out = run(promtool()
        .args(["tsdb", "analyze"])
        .arg(d.path())
        .arg(&block.meta().ulid));
    assert!(out.contains("Series: 2"), "{out}");
}
