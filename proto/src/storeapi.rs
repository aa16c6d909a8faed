//! StoreAPI building blocks shared by every server of `thanos.Store` over a
//! local or remote TSDB (the sidecar, `strata tsdb --grpc-address`).
//!
//! A StoreAPI server attaches its external labels to every series, so it
//! has to (1) decide from the external labels alone whether a request can
//! match anything ([`match_external`], Thanos' `matchesExternalLabels`),
//! (2) give each series its external labels and drop the caller's replica
//! labels ([`finish_labels`]), which can reorder series, hence (3) re-sort
//! and merge series that became equal ([`sort_and_merge`]), and (4) frame
//! the answer, batched when the caller asks for it ([`to_frames`]).

use strata_tsdb::labels::{MatchType, Matcher};
use tonic::Status;

use crate::thanos::{
    label_matcher, series_response, AggrChunk, Chunk, Label, LabelMatcher, Series, SeriesBatch,
    SeriesResponse,
};

/// Keeps the first `limit` entries when `limit > 0` (the label calls' `limit`).
pub fn apply_limit(v: &mut Vec<String>, limit: i64) {
    if let Ok(l) = usize::try_from(limit) {
        if l > 0 {
            v.truncate(l);
        }
    }
}

/// Label pairs as StoreAPI labels.
pub fn to_pb_labels(l: &[(String, String)]) -> Vec<Label> {
    l.iter()
        .map(|(n, v)| Label {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

/// tsdb matchers as StoreAPI matchers.
pub fn to_pb_matchers(ms: &[Matcher]) -> Vec<LabelMatcher> {
    ms.iter()
        .map(|m| LabelMatcher {
            r#type: match m.kind {
                MatchType::Equal => label_matcher::Type::Eq,
                MatchType::NotEqual => label_matcher::Type::Neq,
                MatchType::Regex => label_matcher::Type::Re,
                MatchType::NotRegex => label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

/// StoreAPI matchers to tsdb matchers (regexes anchored, Prometheus
/// semantics); the error names the bad matcher.
pub fn from_pb_matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, String> {
    ms.iter()
        .map(|m| {
            let kind = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchType::Equal,
                Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
                Ok(label_matcher::Type::Re) => MatchType::Regex,
                Ok(label_matcher::Type::Nre) => MatchType::NotRegex,
                Err(_) => return Err(format!("unknown matcher type {}", m.r#type)),
            };
            Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
        })
        .collect()
}

/// [`from_pb_matchers`] for a server: a bad matcher is `InvalidArgument`.
pub fn convert_matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    from_pb_matchers(ms).map_err(Status::invalid_argument)
}

/// `LabelNames`' answer from the TSDB's names: the external label names
/// join a non-empty answer (as in Thanos), sorted, deduplicated, `limit`ed.
pub fn finish_label_names(
    mut names: Vec<String>,
    ext: &[(String, String)],
    limit: i64,
) -> Vec<String> {
    if !names.is_empty() {
        names.extend(ext.iter().map(|(n, _)| n.clone()));
    }
    names.sort();
    names.dedup();
    apply_limit(&mut names, limit);
    names
}

/// `LabelValues`' answer from the TSDB's values: sorted, deduplicated,
/// `limit`ed.
pub fn finish_label_values(mut values: Vec<String>, limit: i64) -> Vec<String> {
    values.sort();
    values.dedup();
    apply_limit(&mut values, limit);
    values
}

/// What a `LabelValues` request needs before the TSDB is asked: an empty
/// label name is `InvalidArgument`; `Ok(Err(answer))` when the external
/// labels answer alone (a matcher rejects them: nothing; the label is an
/// external one: its value); otherwise `Ok(Ok(matchers))` for the TSDB.
pub fn label_values_plan(
    label: &str,
    matchers: &[LabelMatcher],
    ext: &[(String, String)],
) -> Result<Result<Vec<Matcher>, Vec<String>>, Status> {
    if label.is_empty() {
        return Err(Status::invalid_argument(
            "label name parameter cannot be empty",
        ));
    }
    let Some(rest) = match_external(ext, convert_matchers(matchers)?) else {
        return Ok(Err(Vec::new()));
    };
    if let Some((_, v)) = ext.iter().find(|(n, _)| n == label) {
        return Ok(Err(vec![v.clone()]));
    }
    Ok(Ok(rest))
}

/// Thanos' `matchesExternalLabels`: `None` when a matcher on an external
/// label rejects its value; otherwise the matchers on other labels.
pub fn match_external(ext: &[(String, String)], ms: Vec<Matcher>) -> Option<Vec<Matcher>> {
    let mut rest = Vec::with_capacity(ms.len());
    for m in ms {
        match ext.iter().find(|(n, _)| *n == m.name) {
            Some((_, v)) if !m.matches(v) => return None,
            Some(_) => {}
            None => rest.push(m),
        }
    }
    Some(rest)
}

/// Series labels with the external labels attached (they win) and the
/// replica labels removed, sorted by name.
pub fn finish_labels(
    mut labels: Vec<(String, String)>,
    ext: &[(String, String)],
    without: &[String],
) -> Vec<Label> {
    labels.retain(|(n, _)| !ext.iter().any(|(e, _)| e == n));
    labels.extend(ext.iter().cloned());
    labels.retain(|(n, _)| !without.contains(n));
    labels.sort();
    // Consumed, not cloned: this runs for every series of every answer.
    labels
        .into_iter()
        .map(|(name, value)| Label { name, value })
        .collect()
}

fn label_key(s: &Series) -> impl Iterator<Item = (&str, &str)> {
    s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))
}

/// Sorts by labels (Prometheus' `labels.Compare`: pairwise by name, then
/// value, then length) and merges series whose labels became equal.
pub fn sort_and_merge(series: &mut Vec<Series>) {
    series.sort_by(|a, b| label_key(a).cmp(label_key(b)));
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series.drain(..) {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.chunks.extend(s.chunks);
                last.chunks.sort_by_key(|c| (c.min_time, c.max_time));
            }
            _ => out.push(s),
        }
    }
    *series = out;
}

/// One frame per series, or `SeriesBatch` frames of up to `batch` series
/// (Thanos batches only for sizes above 1).
pub fn to_frames(series: Vec<Series>, batch: i64) -> Vec<SeriesResponse> {
    let batch = usize::try_from(batch).unwrap_or(0);
    if batch <= 1 {
        return series
            .into_iter()
            .map(|s| SeriesResponse {
                result: Some(series_response::Result::Series(s)),
            })
            .collect();
    }
    let mut frames = Vec::new();
    let mut it = series.into_iter().peekable();
    while it.peek().is_some() {
        let part: Vec<Series> = it.by_ref().take(batch).collect();
        frames.push(SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch { series: part })),
        });
    }
    frames
}

/// A remote-read chunk as a StoreAPI raw chunk: the encoding shifted by one
/// ([`crate::thanos::chunk::Encoding::from_remote_read`]), the bytes shared.
/// An encoding the StoreAPI lacks is an error naming it.
pub fn aggr_chunk_from_remote(c: crate::prometheus::Chunk) -> Result<AggrChunk, String> {
    let enc = crate::prometheus::chunk::Encoding::try_from(c.r#type)
        .ok()
        .and_then(crate::thanos::chunk::Encoding::from_remote_read)
        .ok_or_else(|| format!("unsupported chunk encoding {}", c.r#type))?;
    Ok(AggrChunk {
        min_time: c.min_time_ms,
        max_time: c.max_time_ms,
        raw: Some(Chunk {
            r#type: enc as i32,
            data: c.data,
            hash: 0,
        }),
        ..Default::default()
    })
}

/// The Info answer of a store over one TSDB: its external label set, the
/// StoreAPI with `[min_time, +∞)`, replica-label stripping, and the
/// Metadata API; `component` is Thanos' component type.
pub fn tsdb_info(
    component: &str,
    ext: &[(String, String)],
    min_time: i64,
) -> crate::thanos::info::InfoResponse {
    use crate::thanos::info::{InfoResponse, MetricMetadataInfo, StoreInfo, TsdbInfo};
    use crate::thanos::ZLabelSet;
    let lset = ZLabelSet {
        labels: to_pb_labels(ext),
    };
    InfoResponse {
        label_sets: vec![lset.clone()],
        component_type: component.into(),
        store: Some(StoreInfo {
            min_time,
            max_time: i64::MAX,
            supports_sharding: false,
            supports_without_replica_labels: true,
            tsdb_infos: vec![TsdbInfo {
                labels: Some(lset),
                min_time,
                max_time: i64::MAX,
            }],
            supports_projections: false,
        }),
        metric_metadata: Some(MetricMetadataInfo {}),
        ..Default::default()
    }
}

/// A `Series` answer built in memory, streamed frame by frame.
pub type FrameStream =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<SeriesResponse, Status>>>;

/// The stream of `frames`, for a `Store::series` implementation.
pub fn frame_stream(frames: Vec<SeriesResponse>) -> FrameStream {
    tonic::codegen::tokio_stream::iter(frames.into_iter().map(Ok).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> Vec<(String, String)> {
        vec![
            ("cluster".into(), "c1".into()),
            ("replica".into(), "a".into()),
        ]
    }

    #[test]
    fn external_label_matchers() {
        let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
        assert!(match_external(&ext(), vec![m(MatchType::Equal, "cluster", "c2")]).is_none());
        assert!(
            match_external(&ext(), vec![m(MatchType::Regex, "cluster", "c.")])
                .unwrap()
                .is_empty()
        );
        let rest = match_external(
            &ext(),
            vec![
                m(MatchType::NotEqual, "replica", "b"),
                m(MatchType::Equal, "__name__", "up"),
            ],
        )
        .unwrap();
        assert_eq!(rest, vec![Matcher::equal("__name__", "up")]);
    }

    #[test]
    fn labels_are_extended_sorted_and_replicas_dropped() {
        let l = finish_labels(
            vec![("a".into(), "1".into()), ("cluster".into(), "own".into())],
            &ext(),
            &["replica".to_string()],
        );
        let got: Vec<_> = l
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(got, vec![("a", "1"), ("cluster", "c1")]);
    }

    #[test]
    fn batching() {
        let s = |v: &str| Series {
            labels: vec![Label {
                name: "a".into(),
                value: v.into(),
            }],
            chunks: vec![],
        };
        let mut series = vec![s("2"), s("1"), s("1"), s("3")];
        sort_and_merge(&mut series);
        assert_eq!(series.len(), 3);
        assert_eq!(to_frames(series.clone(), 0).len(), 3);
        let frames = to_frames(series, 2);
        assert_eq!(frames.len(), 2);
        assert!(matches!(
            &frames[1].result,
            Some(series_response::Result::Batch(b)) if b.series.len() == 1
        ));
    }
}
