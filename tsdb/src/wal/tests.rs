//! End-to-end tests of the WAL: writer, reader, repair, checkpoints, the
//! real Prometheus 2.42 fixture, and crash recovery of a killed process.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::record::{self, Record, RefMetadata, RefSample, RefSeries, Stone};
use super::*;
use crate::labels::Labels;

// ---------------------------------------------------------------------------
// Helpers.

/// Deterministic xorshift generator: tests must be reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A record of `len` bytes; `noisy` ones do not compress.
fn payload(seed: u64, len: usize, noisy: bool) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len)
        .map(|i| {
            if noisy {
                rng.next() as u8
            } else {
                (i / 64) as u8 ^ (seed as u8)
            }
        })
        .collect()
}

fn opts(segment_pages: usize, compress: bool) -> WalOptions {
    WalOptions {
        segment_size: segment_pages * PAGE_SIZE,
        compress,
    }
}

/// Reads every record of `dir`; the error, if any, ends the list.
fn read_all(dir: &Path) -> (Vec<Vec<u8>>, Option<CorruptionInfo>) {
    let mut r = WalReader::open_segments(dir, 0, None).unwrap();
    let mut out = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => out.push(rec),
            Ok(None) => return (out, None),
            Err(ReadError::Corruption(c)) => return (out, Some(c)),
            Err(ReadError::Io(e)) => panic!("io error: {e}"),
        }
    }
}

/// Reads `dir` and asserts it is clean.
fn read_clean(dir: &Path) -> Vec<Vec<u8>> {
    let (recs, err) = read_all(dir);
    assert!(err.is_none(), "unexpected corruption: {}", err.unwrap());
    recs
}

/// `(offset, type byte, len)` of every fragment in a segment file.
fn fragments(path: &Path) -> Vec<(usize, u8, usize)> {
    let data = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut p = 0;
    while p < data.len() {
        if data[p] & 7 == 0 {
            p = (p / PAGE_SIZE + 1) * PAGE_SIZE;
            continue;
        }
        let len = u16::from_be_bytes([data[p + 1], data[p + 2]]) as usize;
        out.push((p, data[p], len));
        p += FRAGMENT_HEADER_SIZE + len;
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn seg_len(dir: &Path, i: u32) -> u64 {
    fs::metadata(segment_path(dir, i)).unwrap().len()
}

fn flip(path: &Path, at: usize) {
    let mut d = fs::read(path).unwrap();
    d[at] ^= 0x40;
    fs::write(path, d).unwrap();
}

fn truncate_file(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

// ---------------------------------------------------------------------------
// Writer and reader.

#[test]
fn golden_bytes_of_a_small_uncompressed_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), opts(4, false)).unwrap();
    wal.log(&[b"abc"]).unwrap();
    let path = segment_path(tmp.path(), 0);
    let mut want = vec![1u8, 0, 3];
    want.extend_from_slice(&crc32c::crc32c(b"abc").to_be_bytes());
    want.extend_from_slice(b"abc");
    assert_eq!(fs::read(&path).unwrap(), want, "written through on log()");
    wal.close().unwrap();
    let data = fs::read(&path).unwrap();
    assert_eq!(data.len(), PAGE_SIZE, "close zero-fills the page");
    assert!(data[10..].iter().all(|&b| b == 0));
    assert_eq!(read_clean(tmp.path()), vec![b"abc".to_vec()]);
}

#[test]
fn round_trip_compressed_and_uncompressed() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            100,
            PAGE_SIZE - 7,
            PAGE_SIZE - 6,
            PAGE_SIZE - 13,
            100_000,
            300_000,
            5,
        ];
        let recs: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| payload(i as u64, n, i % 2 == 0))
            .collect();
        let mut wal = Wal::open(
            tmp.path(),
            WalOptions {
                compress,
                ..Default::default()
            },
        )
        .unwrap();
        // Mixed batch sizes: singles, then the rest in one call.
        for r in &recs[..3] {
            wal.log(&[r]).unwrap();
        }
        let rest: Vec<&[u8]> = recs[3..].iter().map(Vec::as_slice).collect();
        wal.log(&rest).unwrap();
        wal.log(&[]).unwrap();
        drop(wal);
        assert_eq!(read_clean(tmp.path()), recs, "compress={compress}");

        let frags = fragments(&segment_path(tmp.path(), 0));
        let any_snappy = frags.iter().any(|f| f.1 & 0x08 != 0);
        assert_eq!(any_snappy, compress, "snappy bit iff compression on");
        // The zero-length record is an empty full fragment, never compressed.
        assert_eq!(frags[0], (0, 1, 0));
    }
}

#[test]
fn incompressible_records_are_stored_raw_even_with_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), opts(4, true)).unwrap();
    let noisy = payload(1, 1000, true);
    let smooth = payload(2, 1000, false);
    wal.log(&[&noisy, &smooth]).unwrap();
    let frags = fragments(&segment_path(tmp.path(), 0));
    assert_eq!(frags[0].1, 0x01);
    assert_eq!(frags[1].1, 0x09);
    assert!(frags[1].2 < 1000);
    assert_eq!(read_clean(tmp.path()), vec![noisy, smooth]);
}

#[test]
fn record_spanning_pages_has_first_middle_last() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), opts(16, false)).unwrap();
    let small = payload(1, 10, true);
    let big = payload(2, 3 * PAGE_SIZE, true);
    wal.log(&[&small, &big, &small]).unwrap();
    let frags = fragments(&segment_path(tmp.path(), 0));
    let types: Vec<u8> = frags.iter().map(|f| f.1).collect();
    assert_eq!(types, vec![1, 2, 3, 3, 4, 1]);
    // Non-last fragments fill their page to the byte.
    for f in &frags[1..4] {
        assert_eq!((f.0 + 7 + f.2) % PAGE_SIZE, 0);
    }
    assert_eq!(read_clean(tmp.path()), vec![small.clone(), big, small]);
}

#[test]
fn records_never_cross_segments_and_big_ones_get_their_own() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(tmp.path(), opts(2, compress)).unwrap();
        let mut rng = Rng(42);
        let mut recs = Vec::new();
        for i in 0..300u64 {
            let n = if i == 150 {
                150_000
            } else {
                rng.below(20_000) as usize
            };
            recs.push(payload(i, n, i % 3 != 0));
        }
        let mut i = 0;
        while i < recs.len() {
            let k = (1 + rng.below(5) as usize).min(recs.len() - i);
            let batch: Vec<&[u8]> = recs[i..i + k].iter().map(Vec::as_slice).collect();
            wal.log(&batch).unwrap();
            i += k;
        }
        let (first, last) = Wal::segment_range(tmp.path()).unwrap().unwrap();
        assert_eq!(first, 0);
        assert_eq!(last, wal.current_segment());
        assert!(last > 10, "expected many segments, got {last}");
        let mut oversized = 0;
        for s in first..last {
            let len = seg_len(tmp.path(), s);
            assert_eq!(
                len % PAGE_SIZE as u64,
                0,
                "closed segment {s} is page-padded"
            );
            if len > 2 * PAGE_SIZE as u64 {
                oversized += 1;
            }
            // Every segment reads cleanly on its own: no record crosses.
            let mut r = WalReader::open_segments(tmp.path(), s, Some(s)).unwrap();
            while r.next_record().unwrap().is_some() {}
        }
        assert_eq!(oversized, usize::from(!compress), "the 150 KB record (raw)");
        drop(wal);
        assert_eq!(read_clean(tmp.path()), recs);
    }
}

#[test]
fn open_next_segment_truncate_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::open(&dir, opts(4, true)).unwrap();
    assert_eq!(wal.dir(), dir);
    assert_eq!(wal.current_segment(), 0);
    wal.log(&[b"one"]).unwrap();
    assert_eq!(wal.next_segment().unwrap(), 1);
    assert_eq!(seg_len(&dir, 0), PAGE_SIZE as u64);
    // Cutting an empty segment leaves it empty (nothing to pad).
    assert_eq!(wal.next_segment().unwrap(), 2);
    assert_eq!(seg_len(&dir, 1), 0);
    wal.log(&[b"two"]).unwrap();
    wal.sync().unwrap();
    drop(wal);

    // Reopening starts a new segment after the last.
    let mut wal = Wal::open(&dir, opts(4, true)).unwrap();
    assert_eq!(wal.current_segment(), 3);
    wal.log(&[b"three"]).unwrap();
    assert_eq!(Wal::segment_range(&dir).unwrap(), Some((0, 3)));
    assert_eq!(wal.size().unwrap(), PAGE_SIZE as u64 + 10 + 12);
    assert_eq!(
        read_clean(&dir),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );

    wal.truncate(2).unwrap();
    assert_eq!(Wal::segment_range(&dir).unwrap(), Some((2, 3)));
    assert!(
        wal.truncate(4).is_err(),
        "cannot delete the current segment"
    );
    assert_eq!(read_clean(&dir), vec![b"two".to_vec(), b"three".to_vec()]);
    let mut r = WalReader::open_segments(&dir, 3, None).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap(), b"three");
    assert_eq!(r.position(), Some((3, 12)));
    assert!(r.next_record().unwrap().is_none());

    assert!(Wal::open(&dir, opts(3, true)).is_ok());
    assert!(Wal::open(
        &dir,
        WalOptions {
            segment_size: 1000,
            compress: true
        }
    )
    .is_err());
}

#[test]
fn gap_in_segments_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("00000000"), b"").unwrap();
    fs::write(tmp.path().join("00000002"), b"").unwrap();
    fs::write(tmp.path().join("00000001.repair"), b"x").unwrap();
    assert!(Wal::segment_range(tmp.path()).is_err());
    assert!(WalReader::open_segments(tmp.path(), 0, None).is_err());
}

#[test]
fn drop_without_close_recovers_everything_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..200)
        .map(|i| payload(i, (i * 997 % 5000) as usize, true))
        .collect();
    {
        let mut wal = Wal::open(tmp.path(), opts(2, true)).unwrap();
        for r in &recs {
            wal.log(&[r]).unwrap();
        }
        // No close, no sync: dropped as a crashing process would leave it.
    }
    assert_eq!(read_clean(tmp.path()), recs);
}

// ---------------------------------------------------------------------------
// Real Prometheus 2.42 WAL.

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal-prometheus-2.42")
}

fn labels_key(l: &Labels) -> String {
    l.iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn replays_prometheus_2_42_wal() {
    let dir = fixture_dir().join("wal");
    assert_eq!(Wal::segment_range(&dir).unwrap(), Some((0, 1)));
    // Prometheus compressed every record, and the big series record of
    // segment 1 is split into a first and a last fragment.
    let f1: Vec<u8> = fragments(&segment_path(&dir, 1))
        .iter()
        .map(|f| f.1)
        .collect();
    assert_eq!(f1, vec![0x0a, 0x0c, 0x09]);
    assert!(fragments(&segment_path(&dir, 0))
        .iter()
        .all(|f| f.1 == 0x09));

    let mut series: HashMap<u64, Labels> = HashMap::new();
    let mut got: Vec<(String, i64, u64)> = Vec::new();
    let mut kinds = Vec::new();
    for rec in read_clean(&dir) {
        match record::decode(&rec).unwrap() {
            Record::Series(s) => {
                kinds.push('S');
                for s in s {
                    assert!(series.insert(s.series_ref, s.labels).is_none());
                }
            }
            Record::Samples(s) => {
                kinds.push('s');
                for s in s {
                    let l = &series[&s.series_ref];
                    got.push((labels_key(l), s.t, s.v.to_bits()));
                }
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    // One series record (new series only) and one samples record per request.
    assert_eq!(kinds.iter().collect::<String>(), "SsSsSsSs");

    let text = fs::read_to_string(fixture_dir().join("expected-small.txt")).unwrap();
    let mut want: Vec<(String, i64, u64)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                u64::from_str_radix(f[2], 16).unwrap(),
            )
        })
        .collect();
    assert_eq!(want.len(), 216);
    let t0 = want[0].1;
    for n in 0..1500i64 {
        let id = &got[216 + n as usize].0;
        assert!(id.starts_with("__name__=strata_fixture_big,id="), "{id}");
        let key = format!(
            "__name__=strata_fixture_big,id={},n={n}",
            &id["__name__=strata_fixture_big,id=".len()..][..16]
        );
        want.push((key, t0 + 120_000 + n, (n as f64 / 7.0).to_bits()));
    }
    // Spot-check ids: sha256(n) hex prefixes computed when the fixture was made.
    for (n, id) in [
        (0, "5feceb66ffc86f38"),
        (1, "6b86b273ff34fce1"),
        (777, "eaf89db7108470dc"),
        (1499, "a3d0c75739a3c6a8"),
    ] {
        assert!(
            got[216 + n].0.contains(&format!("id={id},n={n}")),
            "{}",
            got[216 + n].0
        );
    }
    // Within a request, Prometheus orders samples by its own series order; compare as sets.
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
    assert_eq!(series.len(), 4 + 1500);
}

#[test]
fn appends_after_a_prometheus_wal() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir().join("wal"), tmp.path());
    let before = read_clean(tmp.path());
    let mut wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.current_segment(), 2);
    let mut rec = Vec::new();
    record::encode_samples(
        &[RefSample {
            series_ref: 1,
            t: 1,
            v: 2.0,
        }],
        &mut rec,
    );
    wal.log(&[&rec]).unwrap();
    let after = read_clean(tmp.path());
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last().unwrap(), &rec);
}

// ---------------------------------------------------------------------------
// Torn tails, corruption and repair.

/// A WAL whose last segment holds many records across several pages.
/// Returns the records and, for each, `(segment, end offset)`.
fn build_wal(dir: &Path, compress: bool) -> (Vec<Vec<u8>>, Vec<(u32, u64)>) {
    let mut wal = Wal::open(dir, opts(8, compress)).unwrap();
    let mut recs = Vec::new();
    for i in 0..60u64 {
        let n = match i % 10 {
            0 => 40_000,
            5 => 0,
            _ => (i * 379 % 3000) as usize,
        };
        let r = payload(i, n, i % 2 == 0);
        wal.log(&[&r]).unwrap();
        recs.push(r);
        if i == 20 {
            wal.next_segment().unwrap();
        }
    }
    drop(wal);
    let mut r = WalReader::open_segments(dir, 0, None).unwrap();
    let mut ends = Vec::new();
    while r.next_record().unwrap().is_some() {
        ends.push(r.position().unwrap());
    }
    assert_eq!(ends.len(), recs.len());
    (recs, ends)
}

#[test]
fn torn_tail_at_every_kind_of_offset_is_repaired() {
    for compress in [false, true] {
        let base = tempfile::tempdir().unwrap();
        let (recs, ends) = build_wal(base.path(), compress);
        let last_seg = ends.last().unwrap().0;
        let last_len = seg_len(base.path(), last_seg);

        let mut cuts: Vec<u64> = vec![0, 1, 3, 6, 7, 8, last_len - 1, last_len];
        for &(s, e) in &ends {
            if s == last_seg {
                // Right at, just before, and inside the next header.
                cuts.extend([e.saturating_sub(1), e, e + 1, e + 3, e + 6]);
            }
        }
        cuts.extend([
            PAGE_SIZE as u64,
            PAGE_SIZE as u64 + 1,
            2 * PAGE_SIZE as u64 - 2,
        ]);
        let mut rng = Rng(7 + u64::from(compress));
        cuts.extend((0..40).map(|_| rng.below(last_len)));
        cuts.retain(|&c| c <= last_len);

        for (k, &cut) in cuts.iter().enumerate() {
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(base.path(), tmp.path());
            truncate_file(&segment_path(tmp.path(), last_seg), cut);
            let survivors = ends
                .iter()
                .filter(|&&(s, e)| s < last_seg || e <= cut)
                .count();

            // Open first, as Prometheus does, then replay.
            let mut wal = Wal::open(tmp.path(), opts(8, compress)).unwrap();
            let (got, err) = read_all(tmp.path());
            assert_eq!(got.len(), survivors, "cut {cut}");
            assert_eq!(got[..], recs[..survivors], "prefix at cut {cut}");
            if let Some(c) = err {
                assert_eq!(c.segment, last_seg, "cut {cut}: {c}");
                assert!(
                    c.valid_len <= cut && c.offset <= cut.max(c.valid_len),
                    "cut {cut}: {c:?}"
                );
                // Alternate between the free function and the writer's method.
                let report = if k % 2 == 0 {
                    wal.repair(&c).unwrap()
                } else {
                    drop(wal);
                    let report = repair(tmp.path(), &c).unwrap();
                    wal = Wal::open(tmp.path(), opts(8, compress)).unwrap();
                    report
                };
                assert_eq!(report.segment, last_seg);
                assert_eq!(report.deleted_segments, vec![last_seg + 1]);
                assert_eq!(report.dropped_bytes, cut - report.truncated_at);
                assert_eq!(seg_len(tmp.path(), last_seg) % PAGE_SIZE as u64, 0);
                assert_eq!(wal.current_segment(), last_seg + 1);
            }
            assert_eq!(
                read_clean(tmp.path()),
                recs[..survivors],
                "after repair, cut {cut}"
            );

            // Appending afterwards works and is read after the survivors.
            let extra = [payload(1000, 50_000, true), payload(1001, 10, false)];
            wal.log(&[&extra[0], &extra[1]]).unwrap();
            drop(wal);
            let all = read_clean(tmp.path());
            assert_eq!(all[..survivors], recs[..survivors]);
            assert_eq!(all[survivors..], extra[..]);
        }
    }
}

#[test]
fn flipped_byte_is_reported_with_segment_and_offset() {
    let base = tempfile::tempdir().unwrap();
    let (recs, ends) = build_wal(base.path(), true);
    let seg0_frags = fragments(&segment_path(base.path(), 0));
    // Damage the data of a fragment in the middle of segment 0.
    let (off, _, len) = seg0_frags[seg0_frags.len() / 2];
    for at in [off + 7 + len / 2, off + 1, off + 4, off] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(base.path(), tmp.path());
        flip(&segment_path(tmp.path(), 0), at);
        let (got, err) = read_all(tmp.path());
        let c = err.expect("corruption detected");
        assert_eq!(c.segment, 0, "{c}");
        assert_eq!(c.offset, off as u64, "byte {at}: {c}");
        assert!(c.valid_len <= off as u64);
        let msg = c.to_string();
        assert!(
            msg.contains("00000000") && msg.contains(&format!("offset {off}")),
            "{msg}"
        );
        let as_error: crate::Error = ReadError::Corruption(c.clone()).into();
        assert!(as_error.to_string().contains("00000000"), "{as_error}");
        let kept = ends
            .iter()
            .filter(|&&(s, e)| s == 0 && e <= c.valid_len)
            .count();
        assert_eq!(got, recs[..kept]);

        // Mid-log corruption: repair drops the rest of the log.
        let report = repair(tmp.path(), &c).unwrap();
        assert_eq!(report.deleted_segments, vec![1]);
        assert_eq!(report.kept_records, kept);
        assert_eq!(read_clean(tmp.path()), recs[..kept]);
        assert_eq!(Wal::segment_range(tmp.path()).unwrap(), Some((0, 0)));
    }
}

/// Writes raw bytes as segment 0 of a fresh dir and reads it.
fn read_raw(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<CorruptionInfo>) {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(segment_path(tmp.path(), 0), bytes).unwrap();
    read_all(tmp.path())
}

fn frag_bytes(typ: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![typ];
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn reader_rejects_bad_fragment_sequences() {
    let ok = frag_bytes(1, b"ok");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frag_bytes(3, b"x"), "middle fragment without a first"),
        (frag_bytes(4, b"x"), "last fragment without a first"),
        (
            [frag_bytes(2, b"x"), frag_bytes(1, b"y")].concat(),
            "full fragment inside",
        ),
        (
            [frag_bytes(2, b"x"), frag_bytes(2, b"y")].concat(),
            "first fragment inside",
        ),
        (
            [frag_bytes(2, b"x"), frag_bytes(4 | 8, b"y")].concat(),
            "compression flag",
        ),
        (frag_bytes(2, b"x"), "last record is torn"),
        (frag_bytes(5, b"x"), "invalid fragment type"),
        (
            frag_bytes(0x11, b"x"),
            "unsupported fragment type byte 0x11",
        ),
        (frag_bytes(1 | 8, b"\xff\xff\xff\xff\x0f"), "snappy"),
        (
            vec![1, 0x01, 0, 0, 0, 0, 0, 9],
            "cut short by the end of the segment",
        ),
        (vec![1, 0], "header cut short"),
        (
            [vec![0, 0, 0, 1], vec![0; 100]].concat(),
            "non-zero byte in page padding",
        ),
    ];
    for (bytes, want) in cases {
        let (got, err) = read_raw(&[ok.clone(), bytes].concat());
        assert_eq!(got, vec![b"ok".to_vec()], "{want}");
        let c = err.unwrap_or_else(|| panic!("no error for {want}"));
        assert!(c.reason.contains(want), "want {want:?}, got {c}");
        assert_eq!(c.valid_len, ok.len() as u64, "{want}");
    }
    // A length that runs past a full page.
    let at = PAGE_SIZE - 50;
    let mut page = frag_bytes(1, &vec![1; at - 7]);
    page.extend_from_slice(&frag_bytes(1, &[7; 100])[..50]);
    let (got, err) = read_raw(&page);
    assert_eq!(got.len(), 1);
    let c = err.unwrap();
    assert!(c.reason.contains("runs past the end of its page"), "{c}");
    assert_eq!((c.offset, c.valid_len), (at as u64, at as u64));
    // A header that does not fit in the page.
    let mut page = frag_bytes(1, &vec![1; PAGE_SIZE - 3 - 7]);
    page.extend_from_slice(&[1, 0, 0]);
    let c = read_raw(&page).1.unwrap();
    assert!(c.reason.contains("crosses a page boundary"), "{c}");
}

#[test]
fn record_torn_at_segment_end_is_corruption_even_with_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        segment_path(tmp.path(), 0),
        [frag_bytes(1, b"a"), frag_bytes(2, b"b")].concat(),
    )
    .unwrap();
    fs::write(segment_path(tmp.path(), 1), frag_bytes(4, b"c")).unwrap();
    let (got, err) = read_all(tmp.path());
    assert_eq!(got, vec![b"a".to_vec()]);
    let c = err.unwrap();
    assert_eq!((c.segment, c.valid_len), (0, 8));
    let report = repair(tmp.path(), &c).unwrap();
    assert_eq!(report.deleted_segments, vec![1]);
    assert_eq!(report.truncated_at, 8);
    assert_eq!(read_clean(tmp.path()), vec![b"a".to_vec()]);
}

#[test]
fn errors_are_sticky_and_repair_checks_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(segment_path(tmp.path(), 0), frag_bytes(3, b"x")).unwrap();
    let mut r = WalReader::open_segments(tmp.path(), 0, None).unwrap();
    let e1 = r.next_record().unwrap_err();
    let e2 = r.next_record().unwrap_err();
    assert_eq!(e1.to_string(), e2.to_string());
    let ReadError::Corruption(c) = e1 else {
        panic!()
    };
    let other = tempfile::tempdir().unwrap();
    assert!(repair(other.path(), &c).is_err(), "wrong directory");
    let mut missing = c.clone();
    missing.segment = 9;
    assert!(repair(tmp.path(), &missing).is_err(), "missing segment");

    // Wal::repair refuses once records were logged after open.
    let mut wal = Wal::open(tmp.path(), opts(4, true)).unwrap();
    wal.log(&[b"new"]).unwrap();
    assert!(wal.repair(&c).is_err());
}

// ---------------------------------------------------------------------------
// Checkpoints.

fn series(r: u64) -> RefSeries {
    RefSeries {
        series_ref: r,
        labels: Labels::from_pairs([("__name__", "m"), ("id", r.to_string().as_str())]),
    }
}

fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::new();
    f(&mut b);
    b
}

#[derive(Default, Debug)]
struct Replayed {
    series: BTreeMap<u64, Labels>,
    samples: Vec<(u64, i64)>,
    stones: Vec<Stone>,
    exemplars: Vec<(u64, i64)>,
    metadata: Vec<RefMetadata>,
    histograms: usize,
}

fn replay(ranges: &[(&Path, u32, Option<u32>)]) -> Replayed {
    let mut r = WalReader::open_ranges(ranges).unwrap();
    let mut out = Replayed::default();
    while let Some(rec) = r.next_record().unwrap() {
        match rec[0] {
            record::SERIES => {
                for s in record::decode_series(&rec).unwrap() {
                    out.series.insert(s.series_ref, s.labels);
                }
            }
            record::SAMPLES => out.samples.extend(
                record::decode_samples(&rec)
                    .unwrap()
                    .iter()
                    .map(|s| (s.series_ref, s.t)),
            ),
            record::TOMBSTONES => out.stones.extend(record::decode_tombstones(&rec).unwrap()),
            record::EXEMPLARS => out.exemplars.extend(
                record::decode_exemplars(&rec)
                    .unwrap()
                    .iter()
                    .map(|e| (e.series_ref, e.t)),
            ),
            record::METADATA => out.metadata.extend(record::decode_metadata(&rec).unwrap()),
            record::HISTOGRAM_SAMPLES => {
                out.histograms += record::filter_histograms(&rec, i64::MIN).unwrap().total
            }
            t => panic!("unexpected type {t}"),
        }
    }
    out
}

fn md(r: u64, help: &str) -> RefMetadata {
    RefMetadata {
        series_ref: r,
        metric_type: 2,
        unit: String::new(),
        help: help.into(),
    }
}

fn histogram_record(refs_times: &[(u64, i64)]) -> Vec<u8> {
    // Integer histograms with an empty body shape: hint, schema 0, zero
    // threshold, zero count, count, sum, no spans, no buckets.
    let mut b = vec![record::HISTOGRAM_SAMPLES];
    b.extend_from_slice(&refs_times[0].0.to_be_bytes());
    b.extend_from_slice(&refs_times[0].1.to_be_bytes());
    for &(r, t) in refs_times {
        let dref = (r as i64 - refs_times[0].0 as i64) as u64;
        let dt = (t - refs_times[0].1) as u64;
        // Zigzag of small non-negative deltas is 2*d (< 64 here).
        b.push((dref * 2) as u8);
        b.push((dt * 2) as u8);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&0f64.to_bits().to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        b.extend_from_slice(&1f64.to_bits().to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
    }
    b
}

#[test]
fn checkpoint_keeps_and_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut wal = Wal::open(dir, opts(4, true)).unwrap();
    let all: Vec<RefSeries> = (1..=6).map(series).collect();
    let samples = |ts: &[i64]| -> Vec<RefSample> {
        (1..=6)
            .flat_map(|r| {
                ts.iter().map(move |&t| RefSample {
                    series_ref: r,
                    t,
                    v: t as f64,
                })
            })
            .collect()
    };
    // Segment 0: series and old samples.
    wal.log(&[
        &enc(|b| record::encode_series(&all[..4], b)),
        &enc(|b| record::encode_samples(&samples(&[10, 20]), b)),
        &enc(|b| record::encode_metadata(&[md(2, "old"), md(3, "x")], b)),
    ])
    .unwrap();
    wal.next_segment().unwrap();
    // Segment 1: more series, samples around mint, tombstones, exemplars, histograms.
    wal.log(&[
        &enc(|b| record::encode_series(&all[4..], b)),
        &enc(|b| record::encode_samples(&samples(&[30, 40]), b)),
        &enc(|b| {
            record::encode_tombstones(
                &[
                    Stone {
                        series_ref: 2,
                        mint: 0,
                        maxt: 10,
                    },
                    Stone {
                        series_ref: 4,
                        mint: 0,
                        maxt: 35,
                    },
                ],
                b,
            )
        }),
        &enc(|b| {
            record::encode_exemplars(
                &[
                    record::RefExemplar {
                        series_ref: 2,
                        t: 20,
                        v: 1.0,
                        labels: Labels::empty(),
                    },
                    record::RefExemplar {
                        series_ref: 2,
                        t: 30,
                        v: 1.0,
                        labels: Labels::empty(),
                    },
                ],
                b,
            )
        }),
        &enc(|b| record::encode_metadata(&[md(2, "new")], b)),
        &histogram_record(&[(2, 20), (4, 30), (6, 40)]),
        &[record::MMAP_MARKERS, 1, 2][..],
    ])
    .unwrap();
    wal.next_segment().unwrap();
    // Segment 2: not covered by the first checkpoint.
    wal.log(&[&enc(|b| record::encode_samples(&samples(&[50]), b))])
        .unwrap();

    let keep = |r: u64| r.is_multiple_of(2);
    let stats = checkpoint(dir, 0, 1, &keep, 30).unwrap();
    assert_eq!(
        stats,
        CheckpointStats {
            dropped_series: 3,
            dropped_samples: 12 + 1,
            dropped_tombstones: 1,
            dropped_exemplars: 1,
            dropped_metadata: 2,
            total_series: 6,
            total_samples: 24 + 3,
            total_tombstones: 2,
            total_exemplars: 2,
            total_metadata: 3,
        }
    );
    let (cp, idx) = last_checkpoint(dir).unwrap().unwrap();
    assert_eq!(idx, 1);
    assert_eq!(cp, dir.join("checkpoint.00000001"));
    assert!(!dir.join("checkpoint.00000001.tmp").exists());
    let got = replay(&[(&cp, 0, None)]);
    assert_eq!(
        got.series.keys().copied().collect::<Vec<_>>(),
        vec![2, 4, 6]
    );
    assert_eq!(got.series[&4], series(4).labels);
    // Samples with t >= mint are kept for every series, as Prometheus does.
    let mut want: Vec<(u64, i64)> = (1..=6).flat_map(|r| [(r, 30), (r, 40)]).collect();
    want.sort();
    let mut s = got.samples.clone();
    s.sort();
    assert_eq!(s, want);
    assert_eq!(
        got.stones,
        vec![Stone {
            series_ref: 4,
            mint: 0,
            maxt: 35
        }]
    );
    assert_eq!(got.exemplars, vec![(2, 30)]);
    assert_eq!(
        got.metadata,
        vec![md(2, "new")],
        "latest metadata of kept series only"
    );
    assert_eq!(got.histograms, 2);

    // The head replays the checkpoint, then the segments after it.
    wal.truncate(2).unwrap();
    let full = replay(&[(&cp, 0, None), (dir, idx + 1, None)]);
    assert_eq!(full.samples.len(), 12 + 6);

    // A second checkpoint folds in the first and deletes it.
    wal.next_segment().unwrap();
    assert!(
        checkpoint(dir, 5, 5, &keep, 30).is_err(),
        "gap to checkpoint 1"
    );
    let stats = checkpoint(dir, 2, 2, &|r| r == 2, 45).unwrap();
    assert_eq!((stats.total_series, stats.dropped_series), (3, 2));
    assert_eq!(last_checkpoint(dir).unwrap().unwrap().1, 2);
    assert!(!cp.exists(), "older checkpoint deleted");
    let got = replay(&[(&dir.join("checkpoint.00000002"), 0, None)]);
    assert_eq!(got.series.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(got.samples.len(), 6, "only t=50 survives mint 45");
    assert_eq!(got.metadata, vec![md(2, "new")]);

    delete_checkpoints(dir, 3).unwrap();
    assert!(last_checkpoint(dir).unwrap().is_none());
}

#[test]
fn checkpoint_fails_on_corruption_and_leaves_no_tmp() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(tmp.path(), opts(4, false)).unwrap();
    wal.log(&[&enc(|b| record::encode_series(&[series(1)], b))])
        .unwrap();
    drop(wal);
    flip(&segment_path(tmp.path(), 0), 10);
    assert!(checkpoint(tmp.path(), 0, 0, &|_| true, 0).is_err());
    assert!(last_checkpoint(tmp.path()).unwrap().is_none());
    assert!(!tmp.path().join("checkpoint.00000000.tmp").exists());
}

// ---------------------------------------------------------------------------
// Robustness.

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_reader(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        header_like in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if header_like && !bytes.is_empty() {
            // Steer toward plausible fragment types so the deeper checks run.
            bytes[0] &= 0x0f;
        }
        let (recs, _) = read_raw(&bytes);
        prop_assert!(recs.iter().map(Vec::len).sum::<usize>() <= bytes.len() * 32 + 64);
    }

    #[test]
    fn damaged_wal_reads_a_prefix(
        flips in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..4),
        cut in any::<u32>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(tmp.path(), opts(4, true)).unwrap();
        let recs: Vec<Vec<u8>> = (0..30).map(|i| payload(i, (i * 1777 % 9000) as usize, i % 2 == 0)).collect();
        for r in &recs {
            wal.log(&[r]).unwrap();
        }
        drop(wal);
        let path = segment_path(tmp.path(), 0);
        let mut data = fs::read(&path).unwrap();
        for (at, x) in flips {
            let at = at as usize % data.len();
            data[at] ^= x | 1;
        }
        data.truncate(cut as usize % (data.len() + 1));
        fs::write(&path, &data).unwrap();
        let (got, err) = read_all(tmp.path());
        prop_assert_eq!(&got[..], &recs[..got.len()]);
        if let Some(c) = err {
            repair(tmp.path(), &c).unwrap();
            prop_assert_eq!(read_clean(tmp.path()), got);
        }
    }
}

// ---------------------------------------------------------------------------
// A real crash: a child process logs records and is killed with SIGKILL.

const CHILD_ENV: &str = "STRATA_WAL_KILL9_CHILD_DIR";

fn child_record(i: u64) -> Vec<u8> {
    let n = (i * 7919 % 40_000) as usize;
    let mut r = payload(i, n, !i.is_multiple_of(3));
    r.extend_from_slice(&i.to_be_bytes());
    r
}

/// The child side of `kill9_loses_no_acknowledged_record`; does nothing
/// unless that test started this binary.
#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut wal = Wal::open(Path::new(&dir), opts(4, true)).unwrap();
    let mut out = std::io::stdout().lock();
    // Bounded, in case the parent dies without killing us.
    for i in 0..20_000 {
        wal.log(&[&child_record(i)]).unwrap();
        // Acknowledge only after log() returned.
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill9_loses_no_acknowledged_record() {
    /// Kills the child on every exit path, a failed assertion included.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut rng = Rng(u64::from(seed) | 1);
    for round in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut child = Child(
            Command::new(exe)
                .args([
                    "--exact",
                    "wal::tests::kill9_child_writer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, tmp.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Acknowledgements are collected by a thread until the pipe closes,
        // so every ack the child printed before it died is counted.
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let acks = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.strip_prefix("ack ") {
                    let i: u64 = i.parse().unwrap();
                    last = Some(i);
                    let _ = tx.send(i);
                }
            }
            last
        });
        // Let it write a while, then SIGKILL (Child::kill on Unix) at a
        // random moment, most likely in the middle of a write.
        while rx.recv().is_ok_and(|i| i < 200) {}
        std::thread::sleep(std::time::Duration::from_micros(rng.below(20_000)));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let acked = acks.join().unwrap().expect("child acknowledged records") + 1;

        let (got, err) = read_all(tmp.path());
        eprintln!(
            "kill -9 round {round}: {acked} acknowledged, {} recovered, torn tail: {:?}",
            got.len(),
            err.as_ref().map(|c| &c.reason)
        );
        assert!(
            got.len() as u64 >= acked,
            "{} < {acked} acknowledged",
            got.len()
        );
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r, &child_record(i as u64), "record {i}");
        }
        if let Some(c) = err {
            // Only the unacknowledged tail may be torn.
            repair(tmp.path(), &c).unwrap();
        }
        assert_eq!(read_clean(tmp.path()).len(), got.len());
        let mut wal = Wal::open(tmp.path(), opts(4, true)).unwrap();
        wal.log(&[b"after"]).unwrap();
        assert_eq!(read_clean(tmp.path()).len(), got.len() + 1);
    }
}

// ---------------------------------------------------------------------------
// The other direction: real Prometheus 2.42 replays a WAL written here.

/// Writes a WAL with a checkpoint (series + old samples), segment 1 (a series
/// record spanning pages, samples) and segment 2, starts
/// `/usr/bin/prometheus` on it and queries the replayed head over HTTP.
/// Skipped when Prometheus is not installed.
#[test]
fn prometheus_2_42_replays_our_wal() {
    let prom = Path::new("/usr/bin/prometheus");
    if !prom.exists() {
        eprintln!("skipped: {} not installed", prom.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = data.join("wal");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now_ms - 10 * 60 * 1000;
    let n_series = 2000u64;
    let all: Vec<RefSeries> = (1..=n_series)
        .map(|r| RefSeries {
            series_ref: r,
            labels: Labels::from_pairs([
                ("__name__", "strata_export"),
                (
                    "id",
                    format!("{:016x}", r.wrapping_mul(0x9E37_79B9_7F4A_7C15)).as_str(),
                ),
            ]),
        })
        .collect();
    let samples = |t: i64| -> Vec<RefSample> {
        (1..=n_series)
            .map(|r| RefSample {
                series_ref: r,
                t,
                v: r as f64 + (t - t0) as f64 / 1000.0,
            })
            .collect()
    };
    let mut wal = Wal::open(&dir, WalOptions::default()).unwrap();
    wal.log(&[
        &enc(|b| record::encode_series(&all[..10], b)),
        &enc(|b| record::encode_samples(&samples(t0)[..10], b)),
    ])
    .unwrap();
    wal.next_segment().unwrap();
    wal.log(&[
        &enc(|b| record::encode_series(&all[10..], b)),
        &enc(|b| record::encode_samples(&samples(t0 + 15_000), b)),
    ])
    .unwrap();
    wal.next_segment().unwrap();
    wal.log(&[&enc(|b| record::encode_samples(&samples(t0 + 30_000), b))])
        .unwrap();
    let frags = fragments(&segment_path(&dir, 1));
    assert!(
        frags.iter().any(|f| f.1 == 0x0a),
        "a record spans pages: {frags:?}"
    );
    checkpoint(&dir, 0, 0, &|_| true, i64::MIN).unwrap();
    wal.truncate(1).unwrap();
    wal.close().unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("prometheus.yml");
    fs::write(
        &config,
        "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
    )
    .unwrap();
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Server(
        Command::new(prom)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Minimal HTTP/1.0 GET against 127.0.0.1 only.
    let get = |path: &str| -> Option<String> {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.starts_with("HTTP/1.0 200").then_some(body)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while get("/-/ready").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "prometheus did not become ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let query = |q: &str, t: i64| -> String {
        get(&format!(
            "/api/v1/query?query={q}&time={}.{:03}",
            t / 1000,
            t % 1000
        ))
        .unwrap()
    };
    // All series (10 from the checkpoint, the rest from segment 1) with
    // their newest sample from segment 2.
    let body = query("count(strata_export)", t0 + 30_000);
    assert!(body.contains(&format!("\"{n_series}\"")), "{body}");
    let body = query("sum(strata_export)", t0 + 30_000);
    let want = (1..=n_series).map(|r| r as f64 + 30.0).sum::<f64>();
    assert!(body.contains(&format!("\"{want}\"")), "{body}");
    // A sample that only the checkpoint holds.
    let body = query("strata_export", t0);
    assert!(
        body.contains("\"1\"")
            && body.contains(&format!(
                "{:016x}",
                1u64.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )),
        "{body}"
    );
}

/// Our writer lays out Prometheus' own records exactly as Prometheus did:
/// re-writing every record of the fixture gives the fixture's bytes.
#[test]
fn layout_is_byte_identical_to_prometheus() {
    for seg in [0, 1] {
        let path = segment_path(&fixture_dir().join("wal"), seg);
        let original = fs::read(&path).unwrap();
        // The compressed payloads as Prometheus stored them.
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut cur = Vec::new();
        for (off, typ, len) in fragments(&path) {
            cur.extend_from_slice(&original[off + 7..off + 7 + len]);
            if typ & 7 == 1 || typ & 7 == 4 {
                payloads.push(std::mem::take(&mut cur));
            }
        }
        let mut out = Vec::new();
        for p in &payloads {
            segment::append_fragments(&mut out, 0, p, true);
        }
        out.resize(out.len().next_multiple_of(PAGE_SIZE), 0);
        assert!(out == original, "segment {seg} differs");

        // End to end through `Wal`: the `snap` crate's encoder produces the
        // same blocks as golang/snappy for these records, so the whole file
        // is identical. (If a `snap` upgrade changes its output, only this
        // part fails; the format stays readable both ways.)
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let mut dec = snap::raw::Decoder::new();
        for p in &payloads {
            wal.log(&[&dec.decompress_vec(p).unwrap()]).unwrap();
        }
        wal.close().unwrap();
        let ours = fs::read(segment_path(tmp.path(), 0)).unwrap();
        assert!(ours == original, "segment {seg}: Wal output differs");
    }
}
