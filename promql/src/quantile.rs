//! Quantile arithmetic: `quantile`/`quantile_over_time`, and
//! `histogram_quantile`/`histogram_fraction` over classic (`le`-labelled)
//! bucket series, following Prometheus' `promql/quantile.go`.

use std::cmp::Ordering;

use crate::histogram::{Bucket as HBucket, FloatHistogram};

/// Relative tolerance below which neighbouring bucket counts are considered
/// equal (floating point noise), as in Prometheus.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Prometheus' `util/almost.Equal`.
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = 2.225_073_858_507_201_4e-308;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// The φ-quantile of `values` (sorted in place), interpolating linearly
/// between the two nearest ranks. NaN sorts first, as in Prometheus.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn sort_buckets(b: &mut [Bucket]) {
    b.sort_by(|x, y| x.upper.partial_cmp(&y.upper).unwrap_or(Ordering::Equal));
}

/// Merges buckets with equal upper bounds into a prefix of `b` (input
/// sorted) and returns the prefix length. Like Prometheus, the tail beyond
/// the prefix is left as it was.
fn coalesce(b: &mut [Bucket]) -> usize {
    if b.is_empty() {
        return 0;
    }
    let mut last = b[0];
    let mut i = 0;
    for j in 1..b.len() {
        let x = b[j];
        if x.upper == last.upper {
            last.count += x.count;
        } else {
            b[i] = last;
            last = x;
            i += 1;
        }
    }
    b[i] = last;
    i + 1
}

/// Result of forcing bucket counts to be monotonic.
#[derive(Debug, Default)]
pub(crate) struct Monotonicity {
    pub forced: bool,
    pub min_bucket: f64,
    pub max_bucket: f64,
    pub max_diff: f64,
}

fn ensure_monotonic(b: &mut [Bucket]) -> Monotonicity {
    let mut m = Monotonicity {
        forced: false,
        min_bucket: f64::INFINITY,
        max_bucket: f64::NEG_INFINITY,
        max_diff: 0.0,
    };
    let Some(first) = b.first() else {
        return m;
    };
    let mut prev = first.count;
    for x in b.iter_mut().skip(1) {
        let cur = x.count;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, SMALL_DELTA_TOLERANCE) {
            x.count = prev;
            continue;
        }
        if cur < prev {
            x.count = prev;
            m.forced = true;
            if x.upper < m.min_bucket {
                m.min_bucket = x.upper;
            }
            if x.upper > m.max_bucket {
                m.max_bucket = x.upper;
            }
            if prev - cur > m.max_diff {
                m.max_diff = prev - cur;
            }
            continue;
        }
        prev = cur;
    }
    m
}

/// `histogram_quantile` over classic buckets. Returns the quantile and what
/// had to be done to make the buckets monotonic.
/// The buckets are sorted, coalesced and made monotonic in place, as in
/// Prometheus (which matters when one bucket set is queried repeatedly).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [Bucket]) -> (f64, Monotonicity) {
    let none = Monotonicity::default();
    if q.is_nan() {
        return (f64::NAN, none);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, none);
    }
    if q > 1.0 {
        return (f64::INFINITY, none);
    }
    sort_buckets(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return (f64::NAN, none),
    }
    let n = coalesce(buckets);
    let buckets = &mut buckets[..n];
    let mono = ensure_monotonic(buckets);
    if n < 2 {
        return (f64::NAN, mono);
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return (f64::NAN, mono);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    let v = if b == n - 1 {
        buckets[n - 2].upper
    } else if b == 0 && buckets[0].upper <= 0.0 {
        buckets[0].upper
    } else {
        let mut start = 0.0;
        let end = buckets[b].upper;
        let mut count = buckets[b].count;
        if b > 0 {
            start = buckets[b - 1].upper;
            count -= buckets[b - 1].count;
            rank -= buckets[b - 1].count;
        }
        start + (end - start) * (rank / count)
    };
    (v, mono)
}

/// `histogram_fraction` over classic buckets: the estimated fraction of
/// observations between `lower` and `upper`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [Bucket]) -> f64 {
    sort_buckets(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let n = coalesce(buckets);
    let buckets = &buckets[..n];
    let count = buckets[n - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut rank = 0.0;
    let (mut lower_rank, mut upper_rank) = (0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// `histogram_quantile` of a native histogram (Prometheus'
/// `HistogramQuantile`). Returns the value and whether NaN observations made
/// the result NaN (`.1`) or skewed it (`.2`).
pub(crate) fn native_quantile(q: f64, h: &FloatHistogram) -> (f64, bool, bool) {
    if q < 0.0 {
        return (f64::NEG_INFINITY, false, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false, false);
    }
    if h.count == 0.0 || q.is_nan() {
        return (f64::NAN, false, false);
    }
    let mut all = h.all_buckets();
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        all.reverse();
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut pos = 0;
    let mut bucket: Option<HBucket> = None;
    while pos < all.len() {
        let b = all[pos];
        pos += 1;
        if b.count == 0.0 {
            continue;
        }
        bucket = Some(b);
        count += b.count;
        if count >= rank {
            break;
        }
    }
    let Some(mut b) = bucket else {
        // No populated bucket: the observations are all NaN (or the
        // histogram is inconsistent).
        if h.sum.is_nan() {
            return (f64::NAN, true, false);
        }
        return (all.last().map_or(0.0, |b| b.upper), false, false);
    };
    if !h.uses_custom_buckets() && b.lower < 0.0 && b.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    } else if h.uses_custom_buckets() {
        if b.lower == f64::NEG_INFINITY {
            if b.upper <= 0.0 {
                return (b.upper, false, false);
            }
            b.lower = 0.0;
        } else if b.upper == f64::INFINITY {
            return (b.lower, false, false);
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            return (f64::NAN, true, false);
        }
        return (b.upper, false, false);
    }
    if forward {
        rank -= count - b.count;
    } else {
        rank = count - rank;
    }
    let mut skew = false;
    if h.sum.is_nan() {
        let rest: f64 = all[pos..].iter().map(|b| b.count).sum();
        if count + rest < h.count {
            skew = true;
        }
    }
    let fraction = rank / b.count;
    if h.uses_custom_buckets() || (b.lower <= 0.0 && b.upper >= 0.0) {
        return (b.lower + (b.upper - b.lower) * fraction, false, skew);
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    if b.lower > 0.0 {
        return (
            (log_lower + (log_upper - log_lower) * fraction).exp2(),
            false,
            skew,
        );
    }
    (
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2(),
        false,
        skew,
    )
}

/// The fraction of bucket `b` below `v`, linearly or on a log scale.
fn fraction_below(b: &HBucket, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    let log_v = v.abs().log2();
    if v > 0.0 {
        return (log_v - log_lower) / (log_upper - log_lower);
    }
    1.0 - ((log_v - log_upper) / (log_lower - log_upper))
}

/// `histogram_fraction` of a native histogram (Prometheus'
/// `HistogramFraction`). The flag reports excluded NaN observations.
pub(crate) fn native_fraction(lower: f64, upper: f64, h: &FloatHistogram) -> (f64, bool) {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, false);
    }
    if lower >= upper {
        return (0.0, false);
    }
    let all = h.all_buckets();
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut pos = 0;
    while pos < all.len() {
        let mut b = all[pos];
        pos += 1;
        count += b.count;
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        let interp = |v: f64| -> f64 {
            if h.uses_custom_buckets() || zero_bucket {
                if b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                rank + b.count * fraction_below(&b, v, true)
            } else {
                rank + b.count * fraction_below(&b, v, false)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    let mut nans = false;
    if h.sum.is_nan() {
        count += all[pos..].iter().map(|b| b.count).sum::<f64>();
        if count < h.count {
            nans = true;
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    ((upper_rank - lower_rank) / h.count, nans)
}

/// Variance of the observations in a native histogram, estimated from
/// bucket midpoints (arithmetic for custom buckets, geometric otherwise).
pub(crate) fn native_variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let d = val - mean;
        (var, c) = crate::util::kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[(f64, f64)]) -> Vec<Bucket> {
        v.iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![3.0, 1.0, 2.0, 4.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(0.0, &mut v), 1.0);
        assert!(quantile(f64::NAN, &mut v).is_nan());
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
    }

    #[test]
    fn bucket_quantile_basic() {
        let mut x = b(&[(0.1, 50.0), (0.2, 90.0), (f64::INFINITY, 100.0)]);
        let (v, m) = bucket_quantile(0.5, &mut x);
        assert!((v - 0.1).abs() < 1e-12);
        assert!(!m.forced);
        let mut x = b(&[(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 10.0)]);
        let (_, m) = bucket_quantile(0.5, &mut x);
        assert!(m.forced);
        let mut x = b(&[(1.0, 10.0)]);
        assert!(bucket_quantile(0.5, &mut x).0.is_nan());
    }

    #[test]
    fn bucket_fraction_basic() {
        let mut x = b(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)]);
        assert_eq!(bucket_fraction(0.0, 1.0, &mut x), 0.5);
        assert_eq!(bucket_fraction(1.0, 0.0, &mut x), 0.0);
    }
}
