//! Set operations on postings lists: sorted, duplicate-free lists of series
//! references.
//!
//! Query planning reduces every selector to intersections, unions and
//! differences of such lists, so these are the hot loops of series selection.
//! Each operation is a linear merge when the inputs have similar sizes and
//! switches to galloping (exponential then binary search) in the larger list
//! when one side is much smaller, so `{job="x", instance="a"}` over a job with
//! a million series costs about `|small| * log |large|`, not `|large|`.
//!
//! Inputs must be sorted ascending without duplicates (the reader checks this
//! when it decodes a list); outputs are too.

use super::SeriesRef;

/// Above this size ratio the smaller list is searched for in the larger one
/// instead of walking both. A gallop costs about `2 log2(gap)` comparisons
/// against one per element for the merge, so it wins once gaps are in the
/// tens; 16 is the usual break-even measured for this kind of loop.
const GALLOP_RATIO: usize = 16;

/// Index of the first element of `s` that is `>= x`, searching from the
/// front with exponentially growing steps. Cheap when the answer is near 0,
/// which is the common case when walking a list in order.
fn gallop(s: &[SeriesRef], x: SeriesRef) -> usize {
    let mut hi = 1;
    while hi < s.len() && s[hi - 1] < x {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(s.len());
    lo + s[lo..hi].partition_point(|&v| v < x)
}

/// Series in both `a` and `b`.
pub fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.is_empty() {
        return out;
    }
    if large.len() / small.len() >= GALLOP_RATIO {
        let mut rest = large;
        for &x in small {
            let i = gallop(rest, x);
            rest = &rest[i..];
            match rest.first() {
                None => break,
                Some(&y) if y == x => {
                    out.push(x);
                    rest = &rest[1..];
                }
                Some(_) => {}
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Intersection of all lists; empty for no lists. Works from the smallest
/// list up so the running result only shrinks and can stop early.
pub fn intersect_many(mut lists: Vec<Vec<SeriesRef>>) -> Vec<SeriesRef> {
    lists.sort_by_key(Vec::len);
    let mut it = lists.into_iter();
    let Some(mut acc) = it.next() else {
        return Vec::new();
    };
    for l in it {
        if acc.is_empty() {
            break;
        }
        acc = intersect(&acc, &l);
    }
    acc
}

/// Series in `a` or `b`.
pub fn merge(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a, b);
    while let (Some(&x), Some(&y)) = (a.first(), b.first()) {
        // Copy whole runs at once: with skewed sizes most of the larger list
        // is copied by `extend_from_slice` rather than element by element.
        if x < y {
            let n = gallop(a, y);
            out.extend_from_slice(&a[..n]);
            a = &a[n..];
        } else if y < x {
            let n = gallop(b, x);
            out.extend_from_slice(&b[..n]);
            b = &b[n..];
        } else {
            out.push(x);
            a = &a[1..];
            b = &b[1..];
        }
    }
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

/// Union of all lists.
pub fn merge_many(mut lists: Vec<Vec<SeriesRef>>) -> Vec<SeriesRef> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        2 => merge(&lists[0], &lists[1]),
        _ => {
            // Many lists (one per matching label value) are usually disjoint
            // runs; concatenating and sorting is O(n log n) with a small
            // constant and beats a heap-based k-way merge in practice.
            let total = lists.iter().map(Vec::len).sum();
            let mut out = Vec::with_capacity(total);
            for l in &lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Series in `a` but not in `b`.
pub fn without(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut out = Vec::with_capacity(a.len());
    let (mut a, mut b) = (a, b);
    while let Some(&x) = a.first() {
        let Some(&y) = b.first() else { break };
        if x < y {
            // Keep the run of `a` below the next excluded ref.
            let n = gallop(a, y);
            out.extend_from_slice(&a[..n]);
            a = &a[n..];
        } else if y < x {
            b = &b[gallop(b, x)..];
        } else {
            a = &a[1..];
            b = &b[1..];
        }
    }
    out.extend_from_slice(a);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set(v: &[SeriesRef]) -> BTreeSet<SeriesRef> {
        v.iter().copied().collect()
    }

    #[test]
    fn small_cases() {
        assert_eq!(intersect(&[1, 3, 5], &[3, 4, 5, 6]), vec![3, 5]);
        assert_eq!(merge(&[1, 3, 5], &[3, 4, 5, 6]), vec![1, 3, 4, 5, 6]);
        assert_eq!(without(&[1, 3, 5], &[3, 4, 5, 6]), vec![1]);
        assert_eq!(intersect(&[], &[1]), Vec::<SeriesRef>::new());
        assert_eq!(without(&[1, 2], &[]), vec![1, 2]);
        assert_eq!(intersect_many(vec![]), Vec::<SeriesRef>::new());
        assert_eq!(
            merge_many(vec![vec![5], vec![1], vec![3, 5]]),
            vec![1, 3, 5]
        );
        let big: Vec<SeriesRef> = (0..10_000).collect();
        assert_eq!(intersect(&[7, 9_999, 20_000], &big), vec![7, 9_999]);
        assert_eq!(without(&big, &[0, 5000]).len(), 9_998);
    }

    fn sorted_list(max_len: usize, max: u64) -> impl Strategy<Value = Vec<SeriesRef>> {
        proptest::collection::btree_set(0..max, 0..max_len).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn ops_agree_with_btreeset(
            a in sorted_list(300, 2000),
            b in sorted_list(300, 2000),
            c in sorted_list(10, 2000),
        ) {
            let (sa, sb, sc) = (set(&a), set(&b), set(&c));
            for (x, y, sx, sy) in [(&a, &b, &sa, &sb), (&a, &c, &sa, &sc), (&c, &a, &sc, &sa)] {
                prop_assert_eq!(intersect(x, y), sx.intersection(sy).copied().collect::<Vec<_>>());
                prop_assert_eq!(merge(x, y), sx.union(sy).copied().collect::<Vec<_>>());
                prop_assert_eq!(without(x, y), sx.difference(sy).copied().collect::<Vec<_>>());
            }
            let all: Vec<SeriesRef> = sa.intersection(&sb).filter(|v| sc.contains(v)).copied().collect();
            prop_assert_eq!(intersect_many(vec![a.clone(), b.clone(), c.clone()]), all);
            let u: Vec<SeriesRef> = sa.iter().chain(&sb).chain(&sc).copied().collect::<BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(merge_many(vec![a, b, c]), u);
        }
    }
}
