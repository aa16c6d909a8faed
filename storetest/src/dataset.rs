//! The fixed dataset every implementation is loaded with, and the loaders.
//!
//! [`Dataset::generate`] builds the same series and samples for a given
//! start time on every run (no randomness): a few hundred series over five
//! hours at a 30 s step, chosen to exercise what StoreAPI implementations
//! get wrong:
//!
//! | family | what it exercises |
//! |---|---|
//! | `acc_http_requests_total` | counters with resets, many label combinations (regex, `!=`, `!~`) |
//! | `acc_node_memory_bytes` | gauges, `+Inf`/`-Inf` values |
//! | `acc_up` | 0/1 gauges, a label (`zone`) that only some series have (empty-value matchers) |
//! | `acc_churn` | series that live 90 minutes each: some only in the first block, some only in the head |
//! | `acc_gappy` | gaps of an hour, one across a block boundary |
//! | `acc_stale` | staleness markers (the NaN bit pattern `0x7ff0000000000002`) in the remote-written part |
//! | `acc_match` | the small `n`/`i` family of Prometheus' matcher tests (missing label, `^a?$`, …) |
//! | `acc_special` | label values with quotes, backslashes, a newline, `=~,{}` and non-ASCII text |
//!
//! The data is split at [`Dataset::block_end`] (`start + 4h`): everything
//! before is loaded as blocks (OpenMetrics backfill by `strata tools tsdb
//! create-blocks-from openmetrics` or `promtool`, see
//! [`Dataset::openmetrics`] / [`Dataset::write_blocks`]), everything after
//! through remote write ([`Dataset::remote_write_requests`]), which is the
//! only way to carry the exact bit pattern of a staleness marker (text
//! formats have one `NaN`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use prost::Message;
use strata_proto::prometheus as pb;

/// Prometheus' staleness marker, `value.StaleNaN`.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Two hours in ms: the block length the dataset is aligned to.
pub const TWO_HOURS: i64 = 2 * 3600 * 1000;
const STEP: i64 = 30_000;
const MINUTE: i64 = 60_000;

/// One series of the dataset: labels sorted by name (incl. `__name__`),
/// samples in time order with distinct timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

impl DataSeries {
    /// The value of label `name`, "" when missing (Prometheus semantics).
    pub fn get(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The generated dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    start: i64,
    series: Vec<DataSeries>,
}

/// Errors of the loaders.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("backfill into {dir}: {msg}")]
    Backfill { dir: String, msg: String },
    #[error("remote write to {url}: {msg}")]
    RemoteWrite { url: String, msg: String },
}

/// A tiny deterministic generator (xorshift64*), so values look noisy but
/// are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

impl Dataset {
    /// The dataset starting at `start_ms`, which must be a multiple of two
    /// hours (so blocks are cut where the model expects). Samples are at
    /// whole seconds (OpenMetrics timestamps are seconds) from `start_ms`
    /// to `start_ms + 5h`.
    ///
    /// # Panics
    /// When `start_ms` is not 2h-aligned: a programming error in the test.
    pub fn generate(start_ms: i64) -> Dataset {
        assert_eq!(start_ms % TWO_HOURS, 0, "dataset start must be 2h-aligned");
        let s = start_ms;
        let end = s + 5 * 3600 * 1000;
        let steps = |from: i64, to: i64| (from..to).step_by(STEP as usize);
        let mut rng = Rng(0x5eed_1234_abcd_9876);
        let mut out = Vec::new();

        // Counters with resets.
        for inst in 0..8 {
            for method in ["GET", "POST", "PUT", "DELETE"] {
                for code in ["200", "404", "500", "503"] {
                    let instance = format!("10.0.0.{inst}:8080");
                    let mut v = 0.0;
                    let mut samples = Vec::new();
                    for t in steps(s, end) {
                        if rng.below(200) == 0 {
                            v = 0.0; // counter reset
                        } else {
                            v += rng.below(50) as f64;
                        }
                        samples.push((t, v));
                    }
                    out.push(DataSeries {
                        labels: labels(&[
                            ("__name__", "acc_http_requests_total"),
                            ("job", "api"),
                            ("instance", &instance),
                            ("method", method),
                            ("code", code),
                        ]),
                        samples,
                    });
                }
            }
        }
        // Gauges, two with infinities.
        for inst in 0..40 {
            let instance = format!("node-{inst:02}");
            let samples = steps(s, end)
                .map(|t| {
                    let v = match (inst, (t - s) / STEP % 97) {
                        (0, 13) => f64::INFINITY,
                        (1, 13) => f64::NEG_INFINITY,
                        _ => 1e9 + rng.below(1 << 20) as f64 * 0.25,
                    };
                    (t, v)
                })
                .collect();
            out.push(DataSeries {
                labels: labels(&[
                    ("__name__", "acc_node_memory_bytes"),
                    ("job", "node"),
                    ("instance", &instance),
                ]),
                samples,
            });
        }
        // `up`, `zone` on every other series only.
        for inst in 0..40 {
            let instance = format!("target-{inst:02}");
            let job = if inst % 3 == 0 { "node" } else { "api" };
            let zone = format!("z{}", inst % 4);
            let mut l = vec![
                ("__name__", "acc_up"),
                ("job", job),
                ("instance", &instance),
            ];
            if inst % 2 == 0 {
                l.push(("zone", &zone));
            }
            let samples = steps(s, end)
                .map(|t| (t, if rng.below(40) == 0 { 0.0 } else { 1.0 }))
                .collect();
            out.push(DataSeries {
                labels: labels(&l),
                samples,
            });
        }
        // Churn: pod k lives [s + 30m*k, s + 30m*k + 90m).
        for k in 0..10i64 {
            let from = s + 30 * MINUTE * k;
            let to = (from + 90 * MINUTE).min(end);
            let pod = format!("pod-{k}");
            out.push(DataSeries {
                labels: labels(&[("__name__", "acc_churn"), ("pod", &pod)]),
                samples: steps(from, to).map(|t| (t, k as f64)).collect(),
            });
        }
        // Gaps: one across the first block boundary, one in the head part.
        for (name, gap_from, gap_to) in [
            ("across-block", s + 90 * MINUTE, s + 150 * MINUTE),
            ("in-head", s + 260 * MINUTE, s + 280 * MINUTE),
        ] {
            out.push(DataSeries {
                labels: labels(&[("__name__", "acc_gappy"), ("gap", name)]),
                samples: steps(s, end)
                    .filter(|t| *t < gap_from || *t >= gap_to)
                    .map(|t| (t, ((t - s) / STEP) as f64))
                    .collect(),
            });
        }
        // Staleness markers, only in the remote-written part (after 4h).
        for (inst, stale_at, resume_at) in [
            ("a", s + 250 * MINUTE, Some(s + 270 * MINUTE)),
            ("b", s + 285 * MINUTE, None),
        ] {
            let mut samples = Vec::new();
            for t in steps(s, end) {
                if t == stale_at {
                    samples.push((t, f64::from_bits(STALE_NAN)));
                } else if t < stale_at || resume_at.is_some_and(|r| t >= r) {
                    samples.push((t, 42.0));
                }
            }
            out.push(DataSeries {
                labels: labels(&[("__name__", "acc_stale"), ("instance", inst)]),
                samples,
            });
        }
        // Prometheus' matcher-test shapes: n, with or without i.
        for l in [
            vec![("n", "1")],
            vec![("n", "1"), ("i", "a")],
            vec![("n", "1"), ("i", "b")],
            vec![("n", "2")],
            vec![("n", "2.5")],
        ] {
            let mut l = l;
            l.push(("__name__", "acc_match"));
            out.push(DataSeries {
                labels: labels(&l),
                samples: steps(s, end).map(|t| (t, 1.0)).collect(),
            });
        }
        // Special characters in label values.
        for (i, v) in [
            "quote \" backslash \\ newline \n end",
            "a=~b,c{d}",
            "日本語 é ✓",
        ]
        .into_iter()
        .enumerate()
        {
            let idx = i.to_string();
            out.push(DataSeries {
                labels: labels(&[("__name__", "acc_special"), ("path", v), ("idx", &idx)]),
                samples: steps(s, end).map(|t| (t, i as f64)).collect(),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Dataset {
            start: s,
            series: out,
        }
    }

    /// Every series, sorted by labels.
    pub fn series(&self) -> &[DataSeries] {
        &self.series
    }

    /// First sample timestamp.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Timestamp of the last sample.
    pub fn max_time(&self) -> i64 {
        self.series
            .iter()
            .filter_map(|s| s.samples.last().map(|x| x.0))
            .max()
            .unwrap_or(self.start)
    }

    /// Where the block part ends and the remote-written part begins.
    pub fn block_end(&self) -> i64 {
        self.start + 2 * TWO_HOURS
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// The samples before [`Self::block_end`] as OpenMetrics text, for
    /// `create-blocks-from openmetrics`. One family per metric name; a
    /// series' samples are contiguous and in time order. The block part
    /// holds no NaN, so parsers' differing NaN bit patterns cannot matter.
    pub fn openmetrics(&self) -> String {
        let until = self.block_end();
        let mut by_name: BTreeMap<&str, Vec<&DataSeries>> = BTreeMap::new();
        for s in &self.series {
            by_name.entry(s.get("__name__")).or_default().push(s);
        }
        let mut out = String::new();
        for (name, series) in by_name {
            let _ = writeln!(out, "# TYPE {name} gauge");
            for s in series {
                let mut lbl = String::new();
                for (n, v) in s.labels.iter().filter(|(n, _)| n != "__name__") {
                    if !lbl.is_empty() {
                        lbl.push(',');
                    }
                    let _ = write!(lbl, "{n}=\"{}\"", escape_label_value(v));
                }
                for &(t, v) in s.samples.iter().filter(|(t, _)| *t < until) {
                    let _ = writeln!(out, "{name}{{{lbl}}} {} {}", format_value(v), t / 1000);
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }

    /// Writes the block part as 2h blocks into `dir` with strata's backfill
    /// (the same blocks promtool writes from [`Self::openmetrics`]).
    pub fn write_blocks(&self, dir: &Path) -> Result<(), LoadError> {
        let text = self.openmetrics();
        let mut on_block = |_: &strata_tsdb::meta::BlockMeta| {};
        strata_tsdb::backfill::create_blocks_from_openmetrics(
            text.as_bytes(),
            dir,
            strata_tsdb::backfill::BackfillOptions {
                max_block_duration: TWO_HOURS,
                max_samples_in_appender: strata_tsdb::backfill::DEFAULT_MAX_SAMPLES_IN_APPENDER,
                on_block: &mut on_block,
            },
        )
        .map(|_| ())
        .map_err(|e| LoadError::Backfill {
            dir: dir.display().to_string(),
            msg: e.to_string(),
        })
    }

    /// The samples from [`Self::block_end`] on as remote-write requests,
    /// in time order: each request carries one 10-minute slice of every
    /// series, so a receiver that rejects out-of-order samples accepts all.
    pub fn remote_write_requests(&self) -> Vec<pb::WriteRequest> {
        let from = self.block_end();
        let end = self.max_time() + 1;
        let slice = 10 * MINUTE;
        let mut out = Vec::new();
        let mut lo = from;
        while lo < end {
            let hi = lo + slice;
            let timeseries: Vec<pb::TimeSeries> = self
                .series
                .iter()
                .filter_map(|s| {
                    let samples: Vec<pb::Sample> = s
                        .samples
                        .iter()
                        .filter(|(t, _)| *t >= lo && *t < hi)
                        .map(|&(timestamp, value)| pb::Sample { value, timestamp })
                        .collect();
                    (!samples.is_empty()).then(|| pb::TimeSeries {
                        labels: s
                            .labels
                            .iter()
                            .map(|(name, value)| pb::Label {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                        samples,
                        ..Default::default()
                    })
                })
                .collect();
            if !timeseries.is_empty() {
                out.push(pb::WriteRequest {
                    timeseries,
                    ..Default::default()
                });
            }
            lo = hi;
        }
        out
    }

    /// Sends [`Self::remote_write_requests`] to `base_url` + `/api/v1/write`
    /// (Prometheus with `--web.enable-remote-write-receiver`, `strata tsdb`).
    pub async fn remote_write(
        &self,
        http: &reqwest::Client,
        base_url: &str,
    ) -> Result<(), LoadError> {
        let url = format!("{}/api/v1/write", base_url.trim_end_matches('/'));
        let err = |msg: String| LoadError::RemoteWrite {
            url: url.clone(),
            msg,
        };
        for req in self.remote_write_requests() {
            let body = snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .map_err(|e| err(e.to_string()))?;
            let r = http
                .post(&url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await
                .map_err(|e| err(e.to_string()))?;
            let status = r.status();
            if !status.is_success() {
                let text = r.text().await.unwrap_or_default();
                return Err(err(format!("{status}: {text}")));
            }
        }
        Ok(())
    }
}

/// OpenMetrics label-value escaping: `\\`, `\"`, `\n`.
fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn format_value(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip representation; never exponent-less
        // garbage, and parsed back to the same bits by Go and by strata.
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let d = Dataset::generate(10 * TWO_HOURS);
        assert!(d.series().len() >= 200, "{}", d.series().len());
        let names: std::collections::BTreeSet<&str> =
            d.series().iter().map(|s| s.get("__name__")).collect();
        assert_eq!(names.len(), 8);
        // Sorted, unique, samples ascending.
        assert!(d.series().windows(2).all(|w| w[0].labels < w[1].labels));
        for s in d.series() {
            assert!(
                s.samples.windows(2).all(|w| w[0].0 < w[1].0),
                "{:?}",
                s.labels
            );
            assert!(s.samples.iter().all(|(t, _)| t % 1000 == 0));
        }
        let stale = d
            .series()
            .iter()
            .flat_map(|s| &s.samples)
            .filter(|(t, v)| v.to_bits() == STALE_NAN && *t >= d.block_end())
            .count();
        assert_eq!(stale, 2);
        // The block part has no NaN at all; the text ends with # EOF.
        let om = d.openmetrics();
        assert!(!om.contains("NaN"));
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains(r#"path="quote \" backslash \\ newline \n end""#));
        // Every remote-written sample is at or after block_end, none lost.
        let rw: usize = d
            .remote_write_requests()
            .iter()
            .flat_map(|r| &r.timeseries)
            .map(|t| t.samples.len())
            .sum();
        let tail = d
            .series()
            .iter()
            .flat_map(|s| &s.samples)
            .filter(|(t, _)| *t >= d.block_end())
            .count();
        assert_eq!(rw, tail);
        assert_eq!(
            om.lines().filter(|l| !l.starts_with('#')).count() + rw,
            d.num_samples()
        );
    }
}
