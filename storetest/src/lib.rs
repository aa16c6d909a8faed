//! The StoreAPI acceptance suite: one closed-box table of cases that runs
//! against every StoreAPI implementation (the sidecar and the querier's
//! StoreAPI today, the store gateway when it exists), as Thanos runs
//! `pkg/store/acceptance_test.go` against each of its stores.
//!
//! The main types:
//! - [`Dataset`] (module [`dataset`]): the fixed, generated data an
//!   implementation is loaded with, and loaders for it (OpenMetrics text for
//!   `create-blocks-from openmetrics`, strata's backfill, remote write);
//! - [`Model`] (module [`model`]): the expected answer of any request,
//!   computed from the dataset and the implementation's external labels;
//! - [`Options`]: what the suite must know of the implementation (external
//!   label sets, a replica label, whether it batches);
//! - [`run_acceptance`]: runs every case ([`series_cases`],
//!   [`label_cases`], the error cases, Info) over a tonic client and returns
//!   a [`Report`], or an [`AcceptanceError`] naming each failed case;
//! - [`collect_series`] and [`compare_implementations`]: decode Series
//!   answers and diff two implementations request by request;
//! - [`pki`]: certificates for the servers' TLS tests.
//!
//! Every Series answer is checked for: label pairs sorted by name, series
//! sorted by labels and unique, the expected label sets, raw XOR chunks
//! (StoreAPI encoding 0) that overlap the requested range, chunk samples
//! inside their chunk's bounds, samples within the range equal to the
//! dataset's bit for bit (staleness markers included), and samples outside
//! the range (chunks are not cut) being real samples of the series.

pub mod dataset;
pub mod model;
pub mod pki;

use std::collections::BTreeMap;
use std::fmt;

use strata_proto::thanos::info::info_client::InfoClient;
use strata_proto::thanos::info::InfoRequest;
use strata_proto::thanos::store_client::StoreClient;
use strata_proto::thanos::{
    label_matcher::Type, series_response, LabelMatcher, LabelNamesRequest, LabelValuesRequest,
    Series, SeriesRequest,
};
use tonic::transport::Channel;

pub use dataset::{DataSeries, Dataset, LoadError, STALE_NAN, TWO_HOURS};
pub use model::{ExpectedSeries, LabelSet, Model};

/// What the suite needs to know about the implementation under test.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The external label sets the implementation attaches: one per copy of
    /// the dataset it serves (a sidecar: its TSDB's external labels; a
    /// querier over N sidecars: N sets). Empty: no external labels.
    pub label_sets: Vec<LabelSet>,
    /// A label whose removal `without_replica_labels` is tested with (for a
    /// sidecar: an external label such as `replica`). `None` skips it.
    pub replica_label: Option<String>,
    /// Whether `response_batch_size > 1` must produce `SeriesBatch` frames.
    pub expect_batches: bool,
    /// Whether `SeriesRequest.limit` is honoured.
    pub series_limit: bool,
    /// Whether a Series request whose only matchers are on external labels
    /// is `InvalidArgument` (a sidecar: nothing is left to ask the TSDB).
    pub external_only_matchers_invalid: bool,
}

/// A passed run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Names of the cases that ran, in order.
    pub passed: Vec<String>,
}

/// One failed case.
#[derive(Clone, Debug)]
pub struct CaseFailure {
    pub case: String,
    pub message: String,
}

/// Every failed case of a run.
#[derive(Clone, Debug, thiserror::Error)]
pub struct AcceptanceError {
    pub failures: Vec<CaseFailure>,
    pub passed: usize,
}

impl fmt::Display for AcceptanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} StoreAPI acceptance case(s) failed ({} passed):",
            self.failures.len(),
            self.passed
        )?;
        for c in &self.failures {
            writeln!(f, "- {}: {}", c.case, c.message)?;
        }
        Ok(())
    }
}

/// A matcher.
pub fn m(t: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

/// A Series request of the table with its name.
#[derive(Clone, Debug)]
pub struct SeriesCase {
    pub name: String,
    pub req: SeriesRequest,
}

/// A decoded Series answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesAnswer {
    pub series: Vec<DecodedSeries>,
    /// Frames of one series each.
    pub series_frames: usize,
    /// `SeriesBatch` frames, with the largest batch seen.
    pub batch_frames: usize,
    pub largest_batch: usize,
    pub warnings: Vec<String>,
}

/// Samples as (timestamp, value bits): bits, so staleness markers and
/// NaNs compare exactly.
pub type SampleBits = Vec<(i64, u64)>;

/// A series with its chunks decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedSeries {
    pub labels: LabelSet,
    /// (min_time, max_time, samples) per chunk, in answer order.
    pub chunks: Vec<(i64, i64, SampleBits)>,
}

impl DecodedSeries {
    /// Samples of all chunks, sorted by time, as (t, value bits); identical
    /// duplicates (overlapping chunks of replicas) collapse.
    pub fn samples(&self) -> Result<Vec<(i64, u64)>, String> {
        let mut all: BTreeMap<i64, u64> = BTreeMap::new();
        for (_, _, c) in &self.chunks {
            for &(t, b) in c {
                if let Some(prev) = all.insert(t, b) {
                    if prev != b && !(is_plain_nan(prev) && is_plain_nan(b)) {
                        return Err(format!(
                            "two different values at {t}: {} and {}",
                            f64::from_bits(prev),
                            f64::from_bits(b)
                        ));
                    }
                }
            }
        }
        Ok(all.into_iter().collect())
    }
}

fn is_plain_nan(b: u64) -> bool {
    f64::from_bits(b).is_nan() && b != STALE_NAN
}

fn labels_of(s: &Series) -> LabelSet {
    s.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Calls Series and decodes every frame and chunk. A non-XOR or
/// undecodable chunk is an error naming the series.
pub async fn collect_series(
    client: &mut StoreClient<Channel>,
    req: SeriesRequest,
) -> Result<SeriesAnswer, tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let mut ans = SeriesAnswer::default();
    let mut raw = Vec::new();
    while let Some(frame) = stream.message().await? {
        match frame.result {
            Some(series_response::Result::Series(s)) => {
                ans.series_frames += 1;
                raw.push(s);
            }
            Some(series_response::Result::Batch(b)) => {
                ans.batch_frames += 1;
                ans.largest_batch = ans.largest_batch.max(b.series.len());
                raw.extend(b.series);
            }
            Some(series_response::Result::Warning(w)) => ans.warnings.push(w),
            Some(series_response::Result::Hints(_)) | None => {}
        }
    }
    for s in raw {
        let labels = labels_of(&s);
        let mut chunks = Vec::with_capacity(s.chunks.len());
        for c in &s.chunks {
            let raw = c.raw.as_ref().ok_or_else(|| {
                tonic::Status::internal(format!("{labels:?}: chunk without raw data"))
            })?;
            if raw.r#type != 0 {
                return Err(tonic::Status::internal(format!(
                    "{labels:?}: chunk encoding {} is not XOR (0)",
                    raw.r#type
                )));
            }
            let samples = decode_xor(&raw.data)
                .map_err(|e| tonic::Status::internal(format!("{labels:?}: {e}")))?;
            chunks.push((c.min_time, c.max_time, samples));
        }
        ans.series.push(DecodedSeries { labels, chunks });
    }
    Ok(ans)
}

/// Decodes one XOR chunk, checking its sample count header.
fn decode_xor(data: &[u8]) -> Result<Vec<(i64, u64)>, String> {
    if data.len() < 2 {
        return Err(format!("XOR chunk of {} bytes", data.len()));
    }
    let n = u16::from_be_bytes([data[0], data[1]]) as usize;
    let out: Vec<(i64, u64)> = strata_tsdb::chunkenc::XorIter::new(data)
        .map(|(t, v)| (t, v.to_bits()))
        .collect();
    if out.len() != n {
        return Err(format!(
            "XOR chunk declares {n} samples, {} decode",
            out.len()
        ));
    }
    Ok(out)
}

/// The time ranges of the table, named, derived from the dataset.
fn ranges(d: &Dataset) -> Vec<(&'static str, i64, i64)> {
    let s = d.start();
    let min = 60_000;
    let b = d.block_end();
    vec![
        ("everything", s - 3_600_000, d.max_time() + 3_600_000),
        (
            "across the first block boundary",
            s + 90 * min + 7_000,
            s + 140 * min,
        ),
        ("across blocks and head", b - 10 * min, b + 10 * min + 1),
        ("head only", b + 15 * min, b + 45 * min),
        ("one millisecond on a sample", s + 60 * min, s + 60 * min),
        (
            "one millisecond between samples",
            s + 60 * min + 1,
            s + 60 * min + 1,
        ),
        ("before the data", s - 3 * 3_600_000, s - 1),
        ("after the data", d.max_time() + 1, d.max_time() + 3_600_000),
    ]
}

/// The Series request table. `ext` are the external label sets (for the
/// external-label matcher cases); `replica` the replica label, if any.
pub fn series_cases(d: &Dataset, opts: &Options) -> Vec<SeriesCase> {
    use Type::{Eq, Neq, Nre, Re};
    let (mint, maxt) = (d.start() - 3_600_000, d.max_time() + 3_600_000);
    let name = |v: &str| m(Eq, "__name__", v);
    let mut sel: Vec<(String, Vec<LabelMatcher>)> = vec![
        ("= on the name".into(), vec![name("acc_node_memory_bytes")]),
        (
            "= on two labels".into(),
            vec![name("acc_http_requests_total"), m(Eq, "method", "PUT")],
        ),
        (
            "= with no match".into(),
            vec![name("acc_http_requests_total"), m(Eq, "method", "PATCH")],
        ),
        (
            "= on an unknown name".into(),
            vec![name("acc_does_not_exist")],
        ),
        (
            "!=".into(),
            vec![name("acc_http_requests_total"), m(Neq, "code", "200")],
        ),
        (
            "=~ alternation".into(),
            vec![name("acc_http_requests_total"), m(Re, "code", "404|503")],
        ),
        ("=~ prefix".into(), vec![m(Re, "__name__", "acc_n.*")]),
        (
            "=~ every acc series".into(),
            vec![m(Re, "__name__", "acc_.+")],
        ),
        (
            "=~ character class".into(),
            vec![
                name("acc_http_requests_total"),
                m(Re, "instance", "10\\.0\\.0\\.[1-3]:8080"),
            ],
        ),
        (
            "!~".into(),
            vec![
                name("acc_http_requests_total"),
                m(Nre, "method", "GET|POST"),
            ],
        ),
        (
            "!~ that matches nothing out".into(),
            vec![name("acc_up"), m(Nre, "job", "nothing")],
        ),
        // Empty-value matchers: a missing label is "".
        (
            "= \"\" selects series without the label".into(),
            vec![name("acc_up"), m(Eq, "zone", "")],
        ),
        (
            "!= \"\" selects series with the label".into(),
            vec![name("acc_up"), m(Neq, "zone", "")],
        ),
        (
            "=~ that matches empty".into(),
            vec![name("acc_up"), m(Re, "zone", "z1|")],
        ),
        (
            "!~ \".+\" is like = \"\"".into(),
            vec![name("acc_up"), m(Nre, "zone", ".+")],
        ),
        (
            "=~ \".*\" on a missing label".into(),
            vec![name("acc_churn"), m(Re, "missing", ".*")],
        ),
        (
            "= \"\" on a missing label only".into(),
            vec![m(Eq, "missing", "")],
        ),
        (
            "!= \"\" on a missing label".into(),
            vec![m(Neq, "missing", "")],
        ),
        ("n=1".into(), vec![m(Eq, "n", "1")]),
        ("n=1, i=a".into(), vec![m(Eq, "n", "1"), m(Eq, "i", "a")]),
        (
            "n=1, i=missing".into(),
            vec![m(Eq, "n", "1"), m(Eq, "i", "missing")],
        ),
        ("n!=1".into(), vec![m(Neq, "n", "1")]),
        ("i=~.+".into(), vec![m(Re, "i", ".+")]),
        (
            "i=\"\" with n".into(),
            vec![name("acc_match"), m(Eq, "i", "")],
        ),
        (
            "n=1, i=~^a?$".into(),
            vec![m(Eq, "n", "1"), m(Re, "i", "^a?$")],
        ),
        (
            "n=1, i!~^a?$".into(),
            vec![m(Eq, "n", "1"), m(Nre, "i", "^a?$")],
        ),
        ("n!~1|2.5".into(), vec![m(Nre, "n", "1|2.5")]),
        (
            "n=~1 is anchored".into(),
            vec![name("acc_match"), m(Re, "n", "2")],
        ),
        // Special characters travel unchanged.
        (
            "= on a value with quotes, backslash and newline".into(),
            vec![
                name("acc_special"),
                m(Eq, "path", "quote \" backslash \\ newline \n end"),
            ],
        ),
        (
            "= on a value with =~,{}".into(),
            vec![m(Eq, "path", "a=~b,c{d}")],
        ),
        (
            "= on a non-ASCII value".into(),
            vec![name("acc_special"), m(Eq, "path", "日本語 é ✓")],
        ),
        ("staleness markers".into(), vec![name("acc_stale")]),
        ("gaps".into(), vec![name("acc_gappy")]),
        (
            "infinities".into(),
            vec![
                name("acc_node_memory_bytes"),
                m(Re, "instance", "node-0[01]"),
            ],
        ),
    ];
    // External-label matchers, from the implementation's label sets.
    if let Some(ext) = opts.label_sets.first() {
        for (n, v) in ext {
            sel.push((
                format!("external label {n}={v:?} matches"),
                vec![name("acc_churn"), m(Eq, n, v)],
            ));
            sel.push((
                format!("external label {n}=~ matches"),
                vec![
                    name("acc_churn"),
                    m(Re, n, &format!("{}.*", regex::escape(v))),
                ],
            ));
            sel.push((
                format!("external label {n} mismatches"),
                vec![name("acc_churn"), m(Eq, n, &format!("{v}-other"))],
            ));
            sel.push((
                format!("external label {n}!= its value"),
                vec![name("acc_churn"), m(Neq, n, v)],
            ));
            sel.push((
                format!("external label {n}=\"\" mismatches"),
                vec![name("acc_churn"), m(Eq, n, "")],
            ));
        }
    }
    let mut cases: Vec<SeriesCase> = sel
        .into_iter()
        .map(|(n, matchers)| SeriesCase {
            name: format!("Series {n}"),
            req: SeriesRequest {
                min_time: mint,
                max_time: maxt,
                matchers,
                ..Default::default()
            },
        })
        .collect();
    // Time-range cuts over families with churn, gaps and markers.
    for (rname, lo, hi) in ranges(d) {
        for fam in [
            "acc_churn",
            "acc_gappy",
            "acc_stale",
            "acc_http_requests_total",
        ] {
            cases.push(SeriesCase {
                name: format!("Series {fam}, time range {rname}"),
                req: SeriesRequest {
                    min_time: lo,
                    max_time: hi,
                    matchers: vec![name(fam)],
                    ..Default::default()
                },
            });
        }
    }
    let base = SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: vec![m(Re, "__name__", "acc_(up|churn|special)")],
        ..Default::default()
    };
    cases.push(SeriesCase {
        name: "Series skip_chunks".into(),
        req: SeriesRequest {
            skip_chunks: true,
            ..base.clone()
        },
    });
    cases.push(SeriesCase {
        name: "Series skip_chunks over a time range".into(),
        req: SeriesRequest {
            skip_chunks: true,
            min_time: d.block_end() + 60_000,
            max_time: d.block_end() + 120_000,
            matchers: vec![name("acc_churn")],
            ..Default::default()
        },
    });
    for size in [2, 7, 1000] {
        cases.push(SeriesCase {
            name: format!("Series response_batch_size {size}"),
            req: SeriesRequest {
                response_batch_size: size,
                ..base.clone()
            },
        });
    }
    cases.push(SeriesCase {
        name: "Series without_replica_labels of an absent label".into(),
        req: SeriesRequest {
            without_replica_labels: vec!["no_such_label".into()],
            ..base.clone()
        },
    });
    if let Some(r) = &opts.replica_label {
        cases.push(SeriesCase {
            name: format!("Series without_replica_labels [{r}]"),
            req: SeriesRequest {
                without_replica_labels: vec![r.clone()],
                ..base.clone()
            },
        });
        cases.push(SeriesCase {
            name: format!("Series without_replica_labels [{r}] with skip_chunks and batching"),
            req: SeriesRequest {
                without_replica_labels: vec![r.clone()],
                skip_chunks: true,
                response_batch_size: 5,
                ..base.clone()
            },
        });
    }
    if opts.series_limit {
        for limit in [1, 3] {
            cases.push(SeriesCase {
                name: format!("Series limit {limit}"),
                req: SeriesRequest {
                    limit,
                    ..base.clone()
                },
            });
        }
    }
    cases
}

/// A LabelNames or LabelValues case.
#[derive(Clone, Debug)]
pub enum LabelCase {
    Names(String, LabelNamesRequest),
    Values(String, LabelValuesRequest),
}

/// The label API table. Time ranges are block-aligned (a whole first block,
/// the remote-written head part, everything): Prometheus answers label
/// calls per block, not per sample.
pub fn label_cases(d: &Dataset, opts: &Options) -> Vec<LabelCase> {
    use Type::{Eq, Re};
    let s = d.start();
    let ranges = [
        ("everything", s - 3_600_000, d.max_time() + 3_600_000),
        ("first block", s, s + TWO_HOURS - 1),
        ("head part", d.block_end(), d.max_time() + 1),
    ];
    let mut out = Vec::new();
    let matcher_sets: Vec<(&str, Vec<LabelMatcher>)> = vec![
        ("no matchers", vec![]),
        ("__name__=acc_churn", vec![m(Eq, "__name__", "acc_churn")]),
        (
            "__name__=~acc_(up|match)",
            vec![m(Re, "__name__", "acc_(up|match)")],
        ),
        (
            "matching nothing",
            vec![m(Eq, "__name__", "acc_does_not_exist")],
        ),
    ];
    for (rname, start, end) in ranges {
        for (mname, ms) in &matcher_sets {
            out.push(LabelCase::Names(
                format!("LabelNames, {mname}, {rname}"),
                LabelNamesRequest {
                    start,
                    end,
                    matchers: ms.clone(),
                    ..Default::default()
                },
            ));
            for label in ["__name__", "pod", "zone", "path"] {
                out.push(LabelCase::Values(
                    format!("LabelValues {label}, {mname}, {rname}"),
                    LabelValuesRequest {
                        label: label.into(),
                        start,
                        end,
                        matchers: ms.clone(),
                        ..Default::default()
                    },
                ));
            }
        }
    }
    let (start, end) = (ranges[0].1, ranges[0].2);
    out.push(LabelCase::Values(
        "LabelValues of an unknown label".into(),
        LabelValuesRequest {
            label: "no_such_label".into(),
            start,
            end,
            ..Default::default()
        },
    ));
    out.push(LabelCase::Names(
        "LabelNames limit 2".into(),
        LabelNamesRequest {
            start,
            end,
            limit: 2,
            ..Default::default()
        },
    ));
    out.push(LabelCase::Values(
        "LabelValues __name__ limit 3".into(),
        LabelValuesRequest {
            label: "__name__".into(),
            start,
            end,
            limit: 3,
            ..Default::default()
        },
    ));
    if let Some(ext) = opts.label_sets.first() {
        for (n, v) in ext {
            out.push(LabelCase::Names(
                format!("LabelNames with external label matcher {n}={v:?}"),
                LabelNamesRequest {
                    start,
                    end,
                    matchers: vec![m(Eq, "__name__", "acc_churn"), m(Eq, n, v)],
                    ..Default::default()
                },
            ));
            out.push(LabelCase::Names(
                format!("LabelNames with mismatching external label {n}"),
                LabelNamesRequest {
                    start,
                    end,
                    matchers: vec![
                        m(Eq, "__name__", "acc_churn"),
                        m(Eq, n, &format!("{v}-other")),
                    ],
                    ..Default::default()
                },
            ));
            out.push(LabelCase::Values(
                format!("LabelValues of external label {n}"),
                LabelValuesRequest {
                    label: n.clone(),
                    start,
                    end,
                    matchers: vec![m(Eq, "__name__", "acc_churn")],
                    ..Default::default()
                },
            ));
            out.push(LabelCase::Values(
                format!("LabelValues pod with mismatching external label {n}"),
                LabelValuesRequest {
                    label: "pod".into(),
                    start,
                    end,
                    matchers: vec![
                        m(Eq, "__name__", "acc_churn"),
                        m(Eq, n, &format!("{v}-other")),
                    ],
                    ..Default::default()
                },
            ));
        }
    }
    out
}

fn truncate(mut v: Vec<String>, limit: i64) -> Vec<String> {
    if limit > 0 {
        v.truncate(limit as usize);
    }
    v
}

/// Checks one Series answer against the model's expectation.
pub fn check_series(
    case: &SeriesCase,
    ans: &SeriesAnswer,
    expected: &[ExpectedSeries],
    opts: &Options,
) -> Result<(), String> {
    let req = &case.req;
    if !ans.warnings.is_empty() {
        return Err(format!("unexpected warnings {:?}", ans.warnings));
    }
    for s in &ans.series {
        if !s.labels.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(format!(
                "labels not sorted by name or repeated: {:?}",
                s.labels
            ));
        }
    }
    if let Some(w) = ans.series.windows(2).find(|w| w[0].labels >= w[1].labels) {
        return Err(format!(
            "series not sorted or not unique: {:?} before {:?}",
            w[0].labels, w[1].labels
        ));
    }
    // Batching.
    if req.response_batch_size > 1 && opts.expect_batches && !ans.series.is_empty() {
        if ans.series_frames > 0 {
            return Err(format!(
                "batch size {}: {} single-series frames",
                req.response_batch_size, ans.series_frames
            ));
        }
        if ans.largest_batch as i64 > req.response_batch_size {
            return Err(format!(
                "batch of {} series exceeds response_batch_size {}",
                ans.largest_batch, req.response_batch_size
            ));
        }
    }
    // Label sets: every required series, optional ones allowed, nothing
    // else, in the model's order.
    let got: Vec<&LabelSet> = ans.series.iter().map(|s| &s.labels).collect();
    let required: Vec<&LabelSet> = expected
        .iter()
        .filter(|e| e.required)
        .map(|e| &e.labels)
        .collect();
    let by_labels: BTreeMap<&LabelSet, &ExpectedSeries> =
        expected.iter().map(|e| (&e.labels, e)).collect();
    if req.limit > 0 {
        let n = (req.limit as usize).min(required.len());
        if got.len() != n || got[..] != required[..n] {
            return Err(format!(
                "limit {}: got {} series {:?}, want the first {n} of {:?}",
                req.limit,
                got.len(),
                got,
                &required[..required.len().min(5)]
            ));
        }
    } else {
        let missing: Vec<_> = required
            .iter()
            .filter(|w| !got.contains(w))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|g| !by_labels.contains_key(**g))
            .take(5)
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "got {} series, want {}; missing (up to 5) {missing:?}; unexpected (up to 5) {extra:?}",
                got.len(),
                required.len()
            ));
        }
    }
    // Chunks.
    for s in &ans.series {
        let e = by_labels[&s.labels];
        if req.skip_chunks {
            if !s.chunks.is_empty() {
                return Err(format!(
                    "skip_chunks: {:?} has {} chunks",
                    s.labels,
                    s.chunks.len()
                ));
            }
            continue;
        }
        if s.chunks.is_empty() {
            return Err(format!("{:?} has no chunks", s.labels));
        }
        for (cmin, cmax, samples) in &s.chunks {
            if *cmin > req.max_time || *cmax < req.min_time {
                return Err(format!(
                    "{:?}: chunk [{cmin}, {cmax}] does not overlap [{}, {}]",
                    s.labels, req.min_time, req.max_time
                ));
            }
            if let Some((t, _)) = samples.iter().find(|(t, _)| t < cmin || t > cmax) {
                return Err(format!(
                    "{:?}: sample at {t} outside its chunk's [{cmin}, {cmax}]",
                    s.labels
                ));
            }
            if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(format!("{:?}: chunk samples not in time order", s.labels));
            }
        }
        let all = s.samples().map_err(|e| format!("{:?}: {e}", s.labels))?;
        for (t, b) in &all {
            match e.all.get(t) {
                Some(x) if x == b => {}
                Some(x) => {
                    return Err(format!(
                        "{:?}: value at {t} is {} ({b:#x}), the dataset has {} ({x:#x})",
                        s.labels,
                        f64::from_bits(*b),
                        f64::from_bits(*x)
                    ))
                }
                None => {
                    return Err(format!(
                        "{:?}: sample at {t} is not in the dataset",
                        s.labels
                    ))
                }
            }
        }
        let in_range: Vec<(i64, u64)> = all
            .into_iter()
            .filter(|(t, _)| *t >= req.min_time && *t <= req.max_time)
            .collect();
        let want: Vec<(i64, u64)> = e.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        if in_range != want {
            let first_diff = in_range
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(in_range.len().min(want.len()));
            return Err(format!(
                "{:?}: {} samples in range, want {}; first difference at index {first_diff}: got {:?}, want {:?}",
                s.labels,
                in_range.len(),
                want.len(),
                in_range.get(first_diff),
                want.get(first_diff)
            ));
        }
    }
    Ok(())
}

/// Runs the whole suite against one implementation. `info`, when given,
/// is checked too (label sets and time range cover the dataset).
pub async fn run_acceptance(
    store: StoreClient<Channel>,
    info: Option<InfoClient<Channel>>,
    dataset: &Dataset,
    opts: &Options,
) -> Result<Report, AcceptanceError> {
    let mut store = store;
    let model = Model::new(dataset, &opts.label_sets);
    let mut passed = Vec::new();
    let mut failures = Vec::new();
    let mut record = |name: String, r: Result<(), String>| match r {
        Ok(()) => passed.push(name),
        Err(message) => failures.push(CaseFailure {
            case: name,
            message,
        }),
    };

    for case in series_cases(dataset, opts) {
        let r = async {
            let expected = model.series(
                &case.req.matchers,
                case.req.min_time,
                case.req.max_time,
                &case.req.without_replica_labels,
            )?;
            let ans = collect_series(&mut store, case.req.clone())
                .await
                .map_err(|s| format!("Series failed: {s}"))?;
            check_series(&case, &ans, &expected, opts)
        }
        .await;
        record(case.name.clone(), r);
    }

    for case in label_cases(dataset, opts) {
        match case {
            LabelCase::Names(name, req) => {
                let r = async {
                    let want = truncate(
                        model.label_names(&req.matchers, req.start, req.end)?,
                        req.limit,
                    );
                    let got = store
                        .label_names(req.clone())
                        .await
                        .map_err(|s| format!("LabelNames failed: {s}"))?
                        .into_inner();
                    if got.names != want {
                        return Err(format!("got {:?}, want {:?}", got.names, want));
                    }
                    Ok(())
                }
                .await;
                record(name, r);
            }
            LabelCase::Values(name, req) => {
                let r = async {
                    let want = truncate(
                        model.label_values(&req.label, &req.matchers, req.start, req.end)?,
                        req.limit,
                    );
                    let got = store
                        .label_values(req.clone())
                        .await
                        .map_err(|s| format!("LabelValues failed: {s}"))?
                        .into_inner();
                    if got.values != want {
                        return Err(format!("got {:?}, want {:?}", got.values, want));
                    }
                    Ok(())
                }
                .await;
                record(name, r);
            }
        }
    }

    // Errors: a clear InvalidArgument, never a panic or an empty success.
    let (mint, maxt) = (dataset.start(), dataset.max_time());
    let mut invalid = vec![
        (
            "Series without matchers is InvalidArgument".to_string(),
            vec![],
        ),
        (
            "Series with an invalid regex is InvalidArgument".to_string(),
            vec![m(Type::Re, "__name__", "acc_(")],
        ),
    ];
    if let (true, Some(ext)) = (opts.external_only_matchers_invalid, opts.label_sets.first()) {
        if let Some((n, v)) = ext.first() {
            invalid.push((
                "Series with only an external-label matcher is InvalidArgument".to_string(),
                vec![m(Type::Eq, n, v)],
            ));
        }
    }
    for (name, matchers) in invalid {
        let r = match collect_series(
            &mut store,
            SeriesRequest {
                min_time: mint,
                max_time: maxt,
                matchers,
                ..Default::default()
            },
        )
        .await
        {
            Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(()),
            Err(s) => Err(format!("want InvalidArgument, got {s}")),
            Ok(a) => Err(format!(
                "want InvalidArgument, got {} series",
                a.series.len()
            )),
        };
        record(name, r);
    }
    let r = match store
        .label_values(LabelValuesRequest {
            label: String::new(),
            start: mint,
            end: maxt,
            ..Default::default()
        })
        .await
    {
        Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(()),
        Err(s) => Err(format!("want InvalidArgument, got {s}")),
        Ok(a) => Err(format!(
            "want InvalidArgument, got {:?}",
            a.into_inner().values
        )),
    };
    record(
        "LabelValues of an empty label name is InvalidArgument".into(),
        r,
    );

    if let Some(mut info) = info {
        let r = async {
            let i = info
                .info(InfoRequest {})
                .await
                .map_err(|s| format!("Info failed: {s}"))?
                .into_inner();
            let mut got: Vec<LabelSet> = i
                .label_sets
                .iter()
                .map(|z| {
                    z.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect()
                })
                .collect();
            got.sort();
            let mut want: Vec<LabelSet> = opts.label_sets.clone();
            want.sort();
            if got != want {
                return Err(format!("label sets {got:?}, want {want:?}"));
            }
            let st = i.store.ok_or("Info without store section")?;
            if st.min_time > dataset.start() || st.max_time < dataset.max_time() {
                return Err(format!(
                    "advertised [{}, {}] does not cover the data [{}, {}]",
                    st.min_time,
                    st.max_time,
                    dataset.start(),
                    dataset.max_time()
                ));
            }
            Ok(())
        }
        .await;
        record("Info label sets and time range".into(), r);
    }

    if failures.is_empty() {
        Ok(Report { passed })
    } else {
        Err(AcceptanceError {
            passed: passed.len(),
            failures,
        })
    }
}

/// Sends every Series request of the table to two implementations and
/// fails on every case whose answers differ: the series that have samples
/// in the requested range, their labels and those samples, bit for bit.
/// Returns the number of requests compared.
pub async fn compare_implementations(
    a: &mut StoreClient<Channel>,
    b: &mut StoreClient<Channel>,
    dataset: &Dataset,
    opts: &Options,
) -> Result<usize, AcceptanceError> {
    let mut failures = Vec::new();
    let cases = series_cases(dataset, opts);
    for case in &cases {
        let r = async {
            let (lo, hi) = (case.req.min_time, case.req.max_time);
            // What is comparable: series with samples in the range, and
            // those samples. Chunks are not cut at the range, and where a
            // TSDB cuts its chunks is its own business.
            let in_range = |ans: SeriesAnswer| -> Result<Vec<(LabelSet, SampleBits)>, String> {
                let mut out = Vec::new();
                for s in ans.series {
                    let samples: Vec<(i64, u64)> = s
                        .samples()?
                        .into_iter()
                        .filter(|(t, _)| *t >= lo && *t <= hi)
                        .collect();
                    if !samples.is_empty() || case.req.skip_chunks {
                        out.push((s.labels, samples));
                    }
                }
                Ok(out)
            };
            let x = in_range(
                collect_series(a, case.req.clone())
                    .await
                    .map_err(|s| format!("first: {s}"))?,
            )?;
            let y = in_range(
                collect_series(b, case.req.clone())
                    .await
                    .map_err(|s| format!("second: {s}"))?,
            )?;
            let lx: Vec<&LabelSet> = x.iter().map(|s| &s.0).collect();
            let ly: Vec<&LabelSet> = y.iter().map(|s| &s.0).collect();
            if lx != ly {
                let only_x: Vec<_> = lx.iter().filter(|l| !ly.contains(l)).take(3).collect();
                let only_y: Vec<_> = ly.iter().filter(|l| !lx.contains(l)).take(3).collect();
                return Err(format!(
                    "{} vs {} series; only in the first (up to 3) {only_x:?}; only in the second {only_y:?}",
                    lx.len(),
                    ly.len()
                ));
            }
            for ((l, px), (_, py)) in x.iter().zip(&y) {
                if px != py {
                    return Err(format!(
                        "{l:?}: {} vs {} samples in range",
                        px.len(),
                        py.len()
                    ));
                }
            }
            Ok(())
        }
        .await;
        if let Err(message) = r {
            failures.push(CaseFailure {
                case: case.name.clone(),
                message,
            });
        }
    }
    if failures.is_empty() {
        Ok(cases.len())
    } else {
        Err(AcceptanceError {
            passed: cases.len() - failures.len(),
            failures,
        })
    }
}
