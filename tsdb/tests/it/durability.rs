//! Durability: acknowledged samples survive kill -9; the head is cut into
//! 2h blocks; retention, deletion and torn WAL tails behave.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::{Labels, Matcher};

const H: i64 = 3_600_000;

fn series(i: usize) -> Labels {
    Labels::from_pairs([("__name__", "dur_test".to_string()), ("i", i.to_string())])
}

/// Not a test on its own: the child process of `kill_9_loses_no_acknowledged_sample`.
/// It appends batches forever and prints `ACK <t>` after each commit returns.
#[test]
#[ignore = "child process of kill_9_loses_no_acknowledged_sample"]
fn kill9_child() {
    let Ok(dir) = std::env::var("STRATA_KILL9_DIR") else {
        return;
    };
    let (db, _) = Db::open(std::path::Path::new(&dir), DbOptions::default()).unwrap();
    let out = std::io::stdout();
    for t in 0.. {
        let mut app = db.appender();
        for i in 0..20 {
            app.append(&series(i), t * 1000, (t * 20 + i as i64) as f64)
                .unwrap();
        }
        app.commit().unwrap();
        let mut o = out.lock();
        writeln!(o, "ACK {t}").unwrap();
        o.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_sample() {
    let d = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability::kill9_child",
            "--ignored",
            "--nocapture",
        ])
        .env("STRATA_KILL9_DIR", d.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last_ack = -1i64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while last_ack < 3000 {
        let Some(Ok(l)) = lines.next() else { break };
        if let Some(t) = l.strip_prefix("ACK ") {
            last_ack = t.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(last_ack >= 3000, "child stopped early at {last_ack}");
    let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
    // Full chunks came back from chunks_head/, the rest from the WAL.
    assert!(report.mmapped_chunks >= 20, "{report:?}");
    assert!(
        report.replayed_samples < 20 * (last_ack as u64 + 1),
        "{report:?}"
    );
    for i in 0..20 {
        let s = db
            .select(&[Matcher::equal("i", i.to_string())], i64::MIN, i64::MAX)
            .unwrap();
        let samples = s[0].samples(i64::MIN, i64::MAX).unwrap();
        assert!(
            samples.len() as i64 > last_ack,
            "series {i}: {} samples, acked {last_ack}",
            samples.len()
        );
        for (t, (ts, v)) in samples.iter().enumerate() {
            assert_eq!(*ts, t as i64 * 1000);
            assert_eq!(*v, (t as i64 * 20 + i as i64) as f64);
        }
    }
}

fn fill(db: &Db, from: i64, to: i64, step: i64) {
    let mut t = from;
    while t < to {
        let mut app = db.appender();
        for i in 0..5 {
            app.append(&series(i), t, t as f64).unwrap();
        }
        app.commit().unwrap();
        t += step;
    }
}

#[test]
fn head_is_cut_into_aligned_2h_blocks_and_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
        fill(&db, H / 2, 9 * H, 15_000);
        let metas = db.compact().unwrap();
        // The head keeps at most 1.5 ranges: blocks up to 6h are cut.
        let ranges: Vec<(i64, i64)> = metas.iter().map(|m| (m.min_time, m.max_time)).collect();
        assert_eq!(ranges, vec![(H / 2, 2 * H), (2 * H, 4 * H), (4 * H, 6 * H)]);
        for m in &metas {
            assert_eq!(m.compaction.level, 1);
            assert_eq!(m.compaction.sources, vec![m.ulid.clone()]);
            assert_eq!(m.stats.num_series, 5);
        }
        let all = db
            .select(&[Matcher::equal("i", "3")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(
            all[0].samples(i64::MIN, i64::MAX).unwrap().len() as i64,
            (9 * H - H / 2) / 15_000
        );
    }
    let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
    assert_eq!(report.blocks, 3);
    let all = db
        .select(&[Matcher::equal("i", "3")], i64::MIN, i64::MAX)
        .unwrap();
    let s = all[0].samples(i64::MIN, i64::MAX).unwrap();
    assert_eq!(s.len() as i64, (9 * H - H / 2) / 15_000);
    assert!(s.windows(2).all(|w| w[1].0 - w[0].0 == 15_000));
    // Samples before the last block's end are now out of bounds.
    let mut app = db.appender();
    assert!(app.append(&series(0), 5 * H, 1.0).is_err());
}

#[test]
fn retention_by_time_and_size_deletes_oldest_blocks() {
    let d = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        retention_time: Some(4 * H),
        ..DbOptions::default()
    };
    let (db, _) = Db::open(d.path(), opts).unwrap();
    fill(&db, 0, 14 * H, 60_000);
    db.compact().unwrap();
    let kept: Vec<i64> = db.blocks().iter().map(|b| b.max_time()).collect();
    // Newest block ends at 12h; blocks ending more than 4h earlier are gone.
    assert_eq!(kept, vec![8 * H, 10 * H, 12 * H]);
    drop(db);
    let total: u64 = strata_tsdb::db::open_blocks(d.path())
        .unwrap()
        .iter()
        .map(|b| b.size())
        .sum();
    let opts = DbOptions {
        retention_size: Some(total - 1),
        ..DbOptions::default()
    };
    let (db, _) = Db::open(d.path(), opts).unwrap();
    let deleted = db.apply_retention().unwrap();
    assert!(!deleted.is_empty());
    assert!(db.blocks().iter().all(|b| b.max_time() > 8 * H));
}

#[test]
fn delete_series_and_clean_tombstones() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
    fill(&db, 0, 7 * H, 60_000);
    db.compact().unwrap();
    let m = [Matcher::equal("i", "1")];
    assert!(db.delete(&m, H, 3 * H).unwrap() >= 1);
    let check = |db: &Db| {
        let s = db.select(&m, i64::MIN, i64::MAX).unwrap();
        let smp = s[0].samples(i64::MIN, i64::MAX).unwrap();
        assert!(smp.iter().all(|(t, _)| *t < H || *t > 3 * H));
        assert_eq!(smp.len() as i64, 7 * 60 - (2 * 60 + 1));
    };
    check(&db);
    drop(db);
    let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
    check(&db);
    let rewritten = db.clean_tombstones().unwrap();
    assert!(!rewritten.is_empty());
    assert!(db.blocks().iter().all(|b| b.num_tombstones() == 0));
    check(&db);
}

#[test]
fn torn_wal_tail_is_repaired_and_reported() {
    let d = tempfile::tempdir().unwrap();
    {
        let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 600_000, 1000);
    }
    // Tear the newest non-empty segment in the middle of its last record.
    let wal = d.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segs.sort();
    let seg = segs.last().unwrap();
    let len = std::fs::metadata(seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
    assert!(report.wal_repaired.is_some(), "{report:?}");
    let s = db
        .select(&[Matcher::equal("i", "0")], i64::MIN, i64::MAX)
        .unwrap();
    let n = s[0].samples(i64::MIN, i64::MAX).unwrap().len();
    assert!((590..600).contains(&n), "{n}");
    // Appending after the repair works and survives another reopen.
    fill(&db, 600_000, 610_000, 1000);
    drop(db);
    let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
    assert!(report.wal_repaired.is_none());
    let s = db
        .select(&[Matcher::equal("i", "0")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(s[0].samples(i64::MIN, i64::MAX).unwrap().len(), n + 10);
}

#[test]
fn wal_is_checkpointed_after_head_compaction_and_replays_from_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let opts = || DbOptions {
        wal_segment_size: 64 * 1024,
        ..DbOptions::default()
    };
    let want;
    {
        let (db, _) = Db::open(d.path(), opts()).unwrap();
        fill(&db, 0, 9 * H, 15_000);
        let (first_before, _) = strata_tsdb::wal::Wal::segment_range(&d.path().join("wal"))
            .unwrap()
            .unwrap();
        db.compact().unwrap();
        let (first_after, _) = strata_tsdb::wal::Wal::segment_range(&d.path().join("wal"))
            .unwrap()
            .unwrap();
        assert!(
            first_after > first_before,
            "old segments were not truncated"
        );
        let cp = strata_tsdb::wal::last_checkpoint(&d.path().join("wal")).unwrap();
        assert!(cp.is_some(), "no checkpoint written");
        want = db
            .select(&[Matcher::equal("i", "2")], i64::MIN, i64::MAX)
            .unwrap()[0]
            .samples(i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(want.len() as i64, 9 * H / 15_000);
    }
    let (db, report) = Db::open(d.path(), opts()).unwrap();
    assert!(report.wal_repaired.is_none());
    let got = db
        .select(&[Matcher::equal("i", "2")], i64::MIN, i64::MAX)
        .unwrap()[0]
        .samples(i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got, want);
    // Nothing is duplicated between blocks and the replayed head.
    assert_eq!(db.head().min_time(), 6 * H);
}

/// A series' labels, chunk time ranges and samples.
type SeriesSnapshot = (String, Vec<(i64, i64)>, Vec<(i64, f64)>);

/// Chunk boundaries and samples of every series, for comparing reopens.
fn snapshot(db: &Db) -> Vec<SeriesSnapshot> {
    db.select(&[], i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.chunks.iter().map(|c| (c.min_time, c.max_time)).collect(),
                s.samples(i64::MIN, i64::MAX).unwrap(),
            )
        })
        .collect()
}

#[test]
fn head_chunks_are_mmapped_replayed_with_the_wal_and_rebuilt_when_corrupted() {
    let d = tempfile::tempdir().unwrap();
    let chunks_head = d.path().join("chunks_head");
    let want;
    {
        let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
        // 3h at 15s: 720 samples, 6 chunks per series, 5 of them full.
        fill(&db, 0, 3 * H, 15_000);
        want = snapshot(&db);
        assert_eq!(want.len(), 5);
        assert!(want.iter().all(|(_, c, s)| c.len() == 6 && s.len() == 720));
    }
    let files: Vec<_> = std::fs::read_dir(&chunks_head).unwrap().collect();
    assert!(!files.is_empty());
    {
        let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
        assert_eq!(report.mmapped_chunks, 25, "{report:?}");
        assert!(report.head_chunks_repaired.is_none());
        // Only the open chunk's samples came from the WAL.
        assert_eq!(report.replayed_samples, 5 * 120, "{report:?}");
        assert_eq!(snapshot(&db), want);
        // The newest sample's value is known: same value is accepted (and
        // dropped), another one is a duplicate.
        let last = 3 * H - 15_000;
        let mut app = db.appender();
        app.append(&series(0), last, last as f64).unwrap();
        assert!(matches!(
            app.append(&series(0), last, 1.5),
            Err(strata_tsdb::Error::DuplicateSampleForTimestamp)
        ));
    }
    // Corrupt a byte in the first chunk of the first file: every chunk
    // after it is dropped from the files and rebuilt from the WAL.
    let first = chunks_head.join("000001");
    let mut b = std::fs::read(&first).unwrap();
    b[40] ^= 0xff;
    std::fs::write(&first, &b).unwrap();
    {
        let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
        let repaired = report.head_chunks_repaired.as_deref().unwrap();
        assert!(repaired.contains("000001"), "{repaired}");
        assert_eq!(report.mmapped_chunks, 0, "{report:?}");
        assert_eq!(report.replayed_samples, 5 * 720);
        assert_eq!(snapshot(&db), want);
        // The chunks the replay cut went to new files.
        assert!(db.head().chunk_mapper().unwrap().num_files() >= 1);
    }
    let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
    assert!(report.head_chunks_repaired.is_none());
    assert_eq!(report.mmapped_chunks, 25, "{report:?}");
    assert_eq!(snapshot(&db), want);
}

#[test]
fn head_chunk_files_are_deleted_once_their_chunks_are_in_blocks() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(d.path(), DbOptions::default()).unwrap();
    let first = d.path().join("chunks_head").join("000001");
    // Each truncation finishes the current file, so a file holds the chunks
    // cut between two compactions.
    fill(&db, 0, 5 * H, 15_000);
    assert_eq!(db.compact().unwrap().len(), 1); // [0, 2h); file 1 ends at 5h
    fill(&db, 5 * H, 7 * H, 15_000);
    assert_eq!(db.compact().unwrap().len(), 1); // [2h, 4h)
    assert!(first.exists());
    let files_before = db.head().chunk_mapper().unwrap().num_files();
    fill(&db, 7 * H, 9 * H, 15_000);
    assert_eq!(db.compact().unwrap().len(), 1); // [4h, 6h): file 1 is all in blocks
    assert!(!first.exists());
    let mapper = db.head().chunk_mapper().unwrap();
    assert!(mapper.num_files() < files_before + 1);
    assert_eq!(
        std::fs::read_dir(d.path().join("chunks_head"))
            .unwrap()
            .count(),
        mapper.num_files()
    );
    let want = snapshot(&db);
    drop(db);
    let (db, report) = Db::open(d.path(), DbOptions::default()).unwrap();
    assert!(report.head_chunks_repaired.is_none());
    assert_eq!(snapshot(&db), want);
}
