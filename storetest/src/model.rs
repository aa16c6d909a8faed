//! The expected answers, computed from the [`Dataset`] and the
//! implementation's external label sets, never written down by hand.
//!
//! [`Model`] is the dataset as a StoreAPI implementation holding it should
//! present it: one copy of every series per external label set (a sidecar
//! has one set; a querier over several sidecars loaded with the same data
//! has one per sidecar), the external labels attached and winning over a
//! series label of the same name. Matchers are evaluated here with the
//! `regex` crate directly (anchored, a missing label is ""; `.` does not match a newline, as in
//! Prometheus 2.x), independently
//! of the matcher code of the implementations under test.

use std::collections::BTreeMap;

use strata_proto::thanos::{label_matcher::Type, LabelMatcher};

use crate::dataset::Dataset;

/// Labels sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// One copy of a dataset series: labels with external labels, samples.
type Copy = (LabelSet, Vec<(i64, f64)>);

/// A series as the suite expects it: labels and samples in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedSeries {
    pub labels: LabelSet,
    /// The samples inside the request's time range.
    pub samples: Vec<(i64, f64)>,
    /// Every sample of the series: a chunk overlapping the range may carry
    /// samples outside it, and those must be real too.
    pub all: BTreeMap<i64, u64>,
    /// `false` for a series with no sample in the range whose samples lie
    /// on both sides of it: a chunk spanning the range may make an
    /// implementation return it (with no sample in range), or not.
    pub required: bool,
}

/// A matcher the model can evaluate.
#[derive(Debug)]
struct ModelMatcher {
    name: String,
    kind: Type,
    value: String,
    re: Option<regex::Regex>,
}

impl ModelMatcher {
    fn new(m: &LabelMatcher) -> Result<Self, String> {
        let kind = Type::try_from(m.r#type).map_err(|_| format!("matcher type {}", m.r#type))?;
        let re = match kind {
            Type::Re | Type::Nre => Some(
                regex::Regex::new(&format!("^(?:{})$", m.value))
                    .map_err(|e| format!("regex {:?}: {e}", m.value))?,
            ),
            _ => None,
        };
        Ok(ModelMatcher {
            name: m.name.clone(),
            kind,
            value: m.value.clone(),
            re,
        })
    }

    fn matches(&self, v: &str) -> bool {
        match self.kind {
            Type::Eq => v == self.value,
            Type::Neq => v != self.value,
            Type::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Type::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// The dataset as seen through one implementation.
#[derive(Clone, Debug)]
pub struct Model {
    /// (labels with external labels attached, samples), one per series and
    /// external label set.
    series: Vec<Copy>,
}

fn get<'a>(l: &'a LabelSet, name: &str) -> &'a str {
    l.iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

impl Model {
    /// `label_sets`: the implementation's external label sets; empty means
    /// one copy without external labels.
    pub fn new(dataset: &Dataset, label_sets: &[LabelSet]) -> Model {
        let none = [LabelSet::new()];
        let sets = if label_sets.is_empty() {
            &none[..]
        } else {
            label_sets
        };
        let mut series = Vec::new();
        for ext in sets {
            for s in dataset.series() {
                let mut l: LabelSet = s
                    .labels
                    .iter()
                    .filter(|(n, _)| !ext.iter().any(|(e, _)| e == n))
                    .cloned()
                    .collect();
                l.extend(ext.iter().cloned());
                l.sort();
                series.push((l, s.samples.clone()));
            }
        }
        Model { series }
    }

    fn matching<'a>(
        &'a self,
        matchers: &[LabelMatcher],
    ) -> Result<impl Iterator<Item = &'a Copy> + 'a, String> {
        let ms = matchers
            .iter()
            .map(ModelMatcher::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .series
            .iter()
            .filter(move |(l, _)| ms.iter().all(|m| m.matches(get(l, &m.name)))))
    }

    /// The Series answer: matching series with samples in `[mint, maxt]`,
    /// `without` labels removed (series that become equal merge, samples
    /// deduplicated by timestamp), sorted by labels. Series with samples
    /// before and after the range but none inside come as `required: false`.
    pub fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        without: &[String],
    ) -> Result<Vec<ExpectedSeries>, String> {
        let mut out: BTreeMap<Vec<(String, String)>, ExpectedSeries> = BTreeMap::new();
        for (l, samples) in self.matching(matchers)? {
            let inside = samples.iter().any(|(t, _)| *t >= mint && *t <= maxt);
            let spans = samples.first().is_some_and(|f| f.0 < mint)
                && samples.last().is_some_and(|l| l.0 > maxt);
            if !inside && !spans {
                continue;
            }
            let labels: LabelSet = l
                .iter()
                .filter(|(n, _)| !without.contains(n))
                .cloned()
                .collect();
            let e = out.entry(labels.clone()).or_insert_with(|| ExpectedSeries {
                labels,
                samples: Vec::new(),
                all: BTreeMap::new(),
                required: false,
            });
            e.required |= inside;
            for &(t, v) in samples {
                e.all.insert(t, v.to_bits());
            }
        }
        // Sorting by Prometheus' labels.Compare is the lexicographic order
        // of the (name, value) pairs, which is BTreeMap's key order.
        Ok(out
            .into_values()
            .map(|mut e| {
                e.samples = e
                    .all
                    .range(mint..=maxt)
                    .map(|(&t, &b)| (t, f64::from_bits(b)))
                    .collect();
                e
            })
            .collect())
    }

    /// Label names of matching series with samples in `[start, end]`,
    /// sorted. Ranges used by the suite are block-aligned, where Prometheus'
    /// block-granular answer and this sample-precise one agree.
    pub fn label_names(
        &self,
        matchers: &[LabelMatcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, String> {
        let mut names = std::collections::BTreeSet::new();
        for (l, samples) in self.matching(matchers)? {
            if samples.iter().any(|(t, _)| *t >= start && *t <= end) {
                names.extend(l.iter().map(|(n, _)| n.clone()));
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Values of `name` over matching series with samples in `[start, end]`.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, String> {
        let mut values = std::collections::BTreeSet::new();
        for (l, samples) in self.matching(matchers)? {
            let v = get(l, name);
            if !v.is_empty() && samples.iter().any(|(t, _)| *t >= start && *t <= end) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::TWO_HOURS;

    fn m(t: Type, n: &str, v: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn empty_matchers_and_external_labels() {
        let d = Dataset::generate(100 * TWO_HOURS);
        let ext = vec![("cluster".to_string(), "c1".to_string())];
        let model = Model::new(&d, std::slice::from_ref(&ext));
        let (lo, hi) = (i64::MIN, i64::MAX);
        let up = |ms: Vec<LabelMatcher>| model.series(&ms, lo, hi, &[]).unwrap();
        let name = m(Type::Eq, "__name__", "acc_up");
        let all = up(vec![name.clone()]);
        let without = up(vec![name.clone(), m(Type::Eq, "zone", "")]);
        let with = up(vec![name.clone(), m(Type::Neq, "zone", "")]);
        assert!(!without.is_empty() && !with.is_empty());
        assert_eq!(without.len() + with.len(), all.len());
        assert!(without.iter().all(|s| get(&s.labels, "zone").is_empty()));
        // A regex that matches "" also selects series without the label.
        let z1 = up(vec![name.clone(), m(Type::Re, "zone", "z1|")]);
        assert_eq!(
            z1.len(),
            without.len()
                + with
                    .iter()
                    .filter(|s| get(&s.labels, "zone") == "z1")
                    .count()
        );
        // External labels are attached and matched like any label.
        assert!(all.iter().all(|s| get(&s.labels, "cluster") == "c1"));
        assert_eq!(
            up(vec![name.clone(), m(Type::Eq, "cluster", "c1")]).len(),
            all.len()
        );
        assert!(up(vec![name.clone(), m(Type::Eq, "cluster", "c2")]).is_empty());
        // Removing a label can merge copies from two label sets.
        let two = Model::new(
            &d,
            &[
                vec![("replica".into(), "a".into())],
                vec![("replica".into(), "b".into())],
            ],
        );
        let both = two
            .series(std::slice::from_ref(&name), lo, hi, &[])
            .unwrap();
        let merged = two.series(&[name], lo, hi, &["replica".into()]).unwrap();
        assert_eq!(both.len(), 2 * merged.len());
        for e in &merged {
            let src = d.series().iter().find(|s| s.labels == e.labels).unwrap();
            assert_eq!(e.samples.len(), src.samples.len(), "{:?}", e.labels);
        }
    }

    #[test]
    fn time_ranges_cut_samples_not_series_boundaries() {
        let d = Dataset::generate(100 * TWO_HOURS);
        let model = Model::new(&d, &[]);
        let ms = [m(Type::Eq, "__name__", "acc_churn")];
        let s = d.start();
        let first_hour = model.series(&ms, s, s + 3_599_999, &[]).unwrap();
        // pods 0 and 1 start in the first hour (one every 30 minutes).
        assert_eq!(first_hour.len(), 2);
        for e in &first_hour {
            assert!(e.samples.iter().all(|(t, _)| *t >= s && *t < s + 3_600_000));
            assert!(e.all.len() > e.samples.len(), "pods live 90 minutes");
        }
        assert!(model.series(&ms, s - 10, s - 1, &[]).unwrap().is_empty());
        assert!(model
            .series(&[m(Type::Re, "__name__", "acc_(")], s, s, &[])
            .is_err());
    }
}
