//! Leveled compaction of blocks: which blocks to merge next, and the meta of
//! the merged block. The plan follows Prometheus 2.42's `LeveledCompactor`
//! (`tsdb/compact.go`), so that a data directory compacts the same way
//! whichever of the two writes it.
//!
//! Main items:
//! - [`ranges`]: the compaction ranges, the minimum block duration times
//!   1, 3, 9, ... (ten steps at most), keeping those not above the maximum
//!   block duration. With min = max (the default, as the sidecar wants) there
//!   is one range and only overlapping or tombstone-heavy blocks are
//!   rewritten.
//! - [`plan`]: the blocks to compact next, in this order of preference:
//!   1. blocks whose time ranges overlap (all of one overlapping run);
//!   2. otherwise, leaving out the newest block (so that a backup taken
//!      block by block has a full block's time to copy it), the first group
//!      of at least two blocks that falls inside one aligned range of the
//!      smallest possible level, and that either fills that range or lies
//!      before the newest block considered;
//!   3. otherwise one big enough block with more than 5% of its series
//!      tombstoned, or any block whose series are all tombstoned.
//! - [`merged_meta`]: level = highest parent level + 1, sources = union of
//!   the parents' sources, parents = the merged blocks.
//!
//! Crash safety is the caller's ([`crate::db::Db::compact`]): the merged
//! block is written under a temporary name and renamed into place, and the
//! parents are deleted only after that; a crash in between leaves both,
//! and opening the database deletes every block that another block lists
//! as its parent.

use crate::meta::{BlockDesc, BlockMeta, Compaction};

/// Compaction ranges for the given block durations (Prometheus'
/// `ExponentialBlockRanges(min, 10, 3)` cut at `max`).
pub fn ranges(min_block_duration: i64, max_block_duration: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(10);
    let mut r = min_block_duration;
    for _ in 0..10 {
        if r > max_block_duration {
            break;
        }
        out.push(r);
        r = match r.checked_mul(3) {
            Some(x) => x,
            None => break,
        };
    }
    out
}

/// Indices into `metas` of the blocks to compact into one, or empty when
/// nothing should be compacted. `ranges` as from [`ranges`].
pub fn plan(metas: &[&BlockMeta], ranges: &[i64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..metas.len()).collect();
    order.sort_by_key(|&i| metas[i].min_time);
    let sorted: Vec<&BlockMeta> = order.iter().map(|&i| metas[i]).collect();

    let overlapping = select_overlapping(&sorted);
    if !overlapping.is_empty() {
        return overlapping.into_iter().map(|i| order[i]).collect();
    }
    // Leave the newest block out (see the module docs).
    let Some((_, older)) = sorted.split_last() else {
        return Vec::new();
    };
    let picked = select_range(older, ranges);
    if !picked.is_empty() {
        return picked.into_iter().map(|i| order[i]).collect();
    }
    if let Some(middle) = ranges.get(ranges.len() / 2) {
        for (i, m) in older.iter().enumerate().rev() {
            let s = &m.stats;
            if m.max_time - m.min_time < *middle {
                // A small block only when every series is deleted.
                if s.num_tombstones > 0 && s.num_tombstones >= s.num_series {
                    return vec![order[i]];
                }
                break;
            }
            if s.num_tombstones as f64 / (s.num_series + 1) as f64 > 0.05 {
                return vec![order[i]];
            }
        }
    }
    Vec::new()
}

/// The first run of blocks (sorted by min time) that overlap each other.
fn select_overlapping(sorted: &[&BlockMeta]) -> Vec<usize> {
    let mut out = Vec::new();
    let Some(first) = sorted.first() else {
        return out;
    };
    let mut global_max = first.max_time;
    for (i, m) in sorted.iter().enumerate().skip(1) {
        if m.min_time < global_max {
            if out.is_empty() {
                out.push(i - 1);
            }
            out.push(i);
        } else if !out.is_empty() {
            break;
        }
        global_max = global_max.max(m.max_time);
    }
    out
}

/// Prometheus' `selectDirs`: for each range above the smallest, the first
/// aligned group of two or more blocks that fills the range or ends before
/// the newest block's start.
fn select_range(sorted: &[&BlockMeta], ranges: &[i64]) -> Vec<usize> {
    if ranges.len() < 2 {
        return Vec::new();
    }
    let Some(newest) = sorted.last() else {
        return Vec::new();
    };
    let high_time = newest.min_time;
    for &r in &ranges[1..] {
        for group in split_by_range(sorted, r) {
            if group.iter().any(|&i| sorted[i].compaction.failed) {
                continue;
            }
            let (Some(&a), Some(&z)) = (group.first(), group.last()) else {
                continue;
            };
            let (mint, maxt) = (sorted[a].min_time, sorted[z].max_time);
            if (maxt - mint == r || maxt <= high_time) && group.len() > 1 {
                return group;
            }
        }
    }
    Vec::new()
}

/// Groups consecutive blocks that fall inside one `r`-aligned range; blocks
/// that cross a range boundary belong to no group.
fn split_by_range(sorted: &[&BlockMeta], r: i64) -> Vec<Vec<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let m = sorted[i];
        // The aligned range start at or below min_time (floor division).
        let t0 = m.min_time.div_euclid(r) * r;
        if m.max_time > t0.saturating_add(r) {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < sorted.len() && sorted[i].max_time <= t0.saturating_add(r) {
            group.push(i);
            i += 1;
        }
        if !group.is_empty() {
            groups.push(group);
        }
    }
    groups
}

/// The compaction section of the block merged from `parents`, and its time
/// range `[min, max)`.
pub fn merged_meta(parents: &[&BlockMeta]) -> (Compaction, i64, i64) {
    let mut level = 0;
    let mut sources: Vec<String> = Vec::new();
    let mut descs = Vec::with_capacity(parents.len());
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    for p in parents {
        level = level.max(p.compaction.level);
        sources.extend(p.compaction.sources.iter().cloned());
        descs.push(BlockDesc {
            ulid: p.ulid.clone(),
            min_time: p.min_time,
            max_time: p.max_time,
        });
        mint = mint.min(p.min_time);
        maxt = maxt.max(p.max_time);
    }
    // ULIDs sort by time, which is the order Prometheus writes them in.
    sources.sort();
    sources.dedup();
    (
        Compaction {
            level: level + 1,
            sources,
            parents: descs,
            ..Default::default()
        },
        mint,
        maxt,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::BlockStats;

    const H: i64 = 3_600_000;

    fn meta(name: &str, min: i64, max: i64) -> BlockMeta {
        let mut m = BlockMeta::new_level1(ulid::Ulid::new(), min, max, BlockStats::default());
        m.ulid = name.to_string();
        m.compaction.sources = vec![name.to_string()];
        m.stats.num_series = 100;
        m
    }

    fn names(ms: &[BlockMeta], picked: Vec<usize>) -> Vec<&str> {
        picked.into_iter().map(|i| ms[i].ulid.as_str()).collect()
    }

    fn run<'a>(ms: &'a [BlockMeta], ranges: &[i64]) -> Vec<&'a str> {
        let refs: Vec<&BlockMeta> = ms.iter().collect();
        names(ms, plan(&refs, ranges))
    }

    #[test]
    fn ranges_are_min_times_powers_of_three_up_to_max() {
        assert_eq!(ranges(2 * H, 2 * H), vec![2 * H]);
        assert_eq!(ranges(2 * H, 6 * H), vec![2 * H, 6 * H]);
        assert_eq!(ranges(2 * H, 20 * H), vec![2 * H, 6 * H, 18 * H]);
        // Prometheus' default max (31 days / 10 → capped) keeps ten at most.
        assert_eq!(ranges(1, i64::MAX).len(), 10);
    }

    #[test]
    fn equal_min_and_max_only_compact_overlaps() {
        let r = ranges(2 * H, 2 * H);
        let ms = [
            meta("a", 0, 2 * H),
            meta("b", 2 * H, 4 * H),
            meta("c", 4 * H, 6 * H),
        ];
        assert!(run(&ms, &r).is_empty());
        let ms = [
            meta("a", 0, 2 * H),
            meta("b", H, 3 * H),
            meta("c", 4 * H, 6 * H),
        ];
        assert_eq!(run(&ms, &r), ["a", "b"]);
    }

    #[test]
    fn three_blocks_fill_the_next_range() {
        let r = ranges(2 * H, 6 * H);
        // The newest block is left out: with three 2h blocks in [0, 6h)
        // plus a newer one, the first three are merged.
        let ms = [
            meta("d", 6 * H, 8 * H),
            meta("a", 0, 2 * H),
            meta("c", 4 * H, 6 * H),
            meta("b", 2 * H, 4 * H),
        ];
        assert_eq!(run(&ms, &r), ["a", "b", "c"]);
        // Without a newer block, c is the newest and is left out; [a, b]
        // neither fills 6h nor ends before b (the newest left) starts.
        let ms = [
            meta("a", 0, 2 * H),
            meta("b", 2 * H, 4 * H),
            meta("c", 4 * H, 6 * H),
        ];
        assert!(run(&ms, &r).is_empty());
        // Earlier, incomplete ranges are compacted once a later block exists.
        let ms = [
            meta("a", 0, 2 * H),
            meta("b", 2 * H, 4 * H),
            meta("e", 8 * H, 10 * H),
            meta("f", 10 * H, 12 * H),
        ];
        assert_eq!(run(&ms, &r), ["a", "b"]);
    }

    #[test]
    fn compacted_blocks_move_up_a_level() {
        let r = ranges(2 * H, 18 * H);
        let mut ms = vec![
            meta("x", 0, 6 * H),
            meta("y", 6 * H, 12 * H),
            meta("z", 12 * H, 18 * H),
            meta("n", 18 * H, 20 * H),
        ];
        for m in &mut ms[..3] {
            m.compaction.level = 2;
        }
        assert_eq!(run(&ms, &r), ["x", "y", "z"]);
        let refs: Vec<&BlockMeta> = ms[..3].iter().collect();
        let (c, mint, maxt) = merged_meta(&refs);
        assert_eq!((c.level, mint, maxt), (3, 0, 18 * H));
        assert_eq!(c.sources, ["x", "y", "z"]);
        assert_eq!(
            c.parents
                .iter()
                .map(|p| p.ulid.as_str())
                .collect::<Vec<_>>(),
            ["x", "y", "z"]
        );
    }

    #[test]
    fn failed_and_misaligned_blocks_are_skipped() {
        let r = ranges(2 * H, 6 * H);
        let mut ms = vec![
            meta("a", 0, 2 * H),
            meta("b", 2 * H, 4 * H),
            meta("c", 4 * H, 6 * H),
            meta("d", 6 * H, 8 * H),
        ];
        ms[1].compaction.failed = true;
        assert!(run(&ms, &r).is_empty());
        // A block across a range boundary (a) is in no group.
        let ms = [
            meta("a", 5 * H, 7 * H),
            meta("b", 7 * H, 9 * H),
            meta("c", 9 * H, 11 * H),
            meta("d", 13 * H, 15 * H),
            meta("e", 15 * H, 17 * H),
        ];
        assert_eq!(run(&ms, &r), ["b", "c"]);
    }

    #[test]
    fn tombstone_heavy_blocks_are_rewritten() {
        let r = ranges(2 * H, 6 * H);
        let mut ms = vec![meta("a", 0, 6 * H), meta("b", 6 * H, 8 * H)];
        ms[0].stats.num_tombstones = 5; // 5 / 101: under 5%
        assert!(run(&ms, &r).is_empty());
        ms[0].stats.num_tombstones = 6;
        assert_eq!(run(&ms, &r), ["a"]);
        // Small blocks only when everything is deleted.
        let mut ms = vec![meta("a", 0, 2 * H), meta("b", 6 * H, 8 * H)];
        ms[0].stats.num_tombstones = 50;
        assert!(run(&ms, &r).is_empty());
        ms[0].stats.num_tombstones = 100;
        assert_eq!(run(&ms, &r), ["a"]);
        assert!(run(&[], &r).is_empty());
    }
}
