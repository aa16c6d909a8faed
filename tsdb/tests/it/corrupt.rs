//! Damaged blocks give clear errors naming the damaged file, never a panic.

use crate::common::*;

#[test]
fn real_promtool_block_reads_exactly_as_promtool_dumps_it() {
    let good = fixtures().join("blocks/good");
    let want = std::fs::read_to_string(fixtures().join("blocks/good.dump")).unwrap();
    assert_eq!(strata_dump(&good), want);
}

#[test]
fn every_corrupted_fixture_is_a_clear_error() {
    let cases = [
        ("bad-crc-chunk", "chunks/000001"),
        ("truncated-chunks", "chunks/000001"),
        ("missing-meta", "meta.json"),
        ("garbage-index", "index"),
        ("bad-crc-index", "index"),
    ];
    let all = strata_tsdb::tools::parse_selector("{__name__=~'(?s:.*)'}").unwrap();
    for (kind, file) in cases {
        let dir = fixtures().join("blocks/corrupt").join(kind);
        let mut out = Vec::new();
        let err = strata_tsdb::tools::dump(&dir, i64::MIN, i64::MAX, &all, &mut out)
            .expect_err(kind)
            .to_string();
        assert!(
            err.contains(file),
            "{kind}: error {err:?} does not name {file}"
        );
    }
}
