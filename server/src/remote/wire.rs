//! A borrowing decoder of remote-write 1.0 `WriteRequest` bodies.
//!
//! prost would build a `String` for every label name and value of every
//! sample (two dozen allocations per sample for cAdvisor-sized label sets)
//! only for the receiver to copy them again into a label set. This decoder
//! walks the protobuf bytes in place instead: [`for_each_series`] hands out
//! one [`WireSeries`] at a time, whose labels are still encoded
//! (`prometheus.Label` messages, decoded on demand by [`label`]) and whose
//! samples are decoded into a reused vector. The raw label bytes double as
//! the key of the receiver's series cache.
//!
//! Native histograms are handed out still encoded (see
//! [`WireSeries::histograms`]); fields the receiver does not use here
//! (metadata, exemplars, unknown fields) are skipped as protobuf requires; malformed
//! input (truncated varints or lengths, group wire types, invalid UTF-8 in
//! a label) is an error, never a panic.

use std::fmt;

use strata_proto::prometheus as pb;
use strata_proto::wire::{put_varint, Reader, WireError};

/// Why a body is not a valid `WriteRequest`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(&'static str);

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError(e.0)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decoding WriteRequest: {}", self.0)
    }
}

/// One `prometheus.TimeSeries` of a request, borrowed from the body.
#[derive(Default)]
pub(crate) struct WireSeries<'a> {
    /// Each `labels` field's payload (an encoded `prometheus.Label`), in
    /// wire order.
    pub labels: Vec<&'a [u8]>,
    /// `(timestamp ms, value)` of each `samples` field, in wire order.
    pub samples: Vec<(i64, f64)>,
    /// Each `histograms` field's payload (an encoded `prometheus.Histogram`),
    /// in wire order; decoded by the receiver with prost (native histograms
    /// are rare next to float samples, and their buckets need owned
    /// vectors anyway).
    pub histograms: Vec<&'a [u8]>,
}

impl WireSeries<'_> {
    /// A hash of the label bytes as sent, for the series cache (FxHash's
    /// multiply-rotate over 8-byte words: no allocation, no SipHash).
    pub fn labels_hash(&self) -> u64 {
        let mut h = 0u64;
        let mut mix = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        for l in &self.labels {
            mix(l.len() as u64);
            let mut chunks = l.chunks_exact(8);
            for c in &mut chunks {
                mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
            }
            let mut tail = [0u8; 8];
            let rest = chunks.remainder();
            tail[..rest.len()].copy_from_slice(rest);
            mix(u64::from_le_bytes(tail));
        }
        h
    }

    /// Whether `key` (from [`WireSeries::labels_key`]) holds exactly these
    /// label bytes.
    pub fn labels_equal(&self, key: &[u8]) -> bool {
        let mut rest = key;
        for l in &self.labels {
            let Some((len, after)) = split_len(rest) else {
                return false;
            };
            if len != l.len() || after.len() < len || &after[..len] != *l {
                return false;
            }
            rest = &after[len..];
        }
        rest.is_empty()
    }

    /// The label bytes as one owned key: each payload prefixed by its length.
    pub fn labels_key(&self) -> Box<[u8]> {
        let mut out = Vec::with_capacity(self.labels.iter().map(|l| l.len() + 2).sum());
        for l in &self.labels {
            put_varint(&mut out, l.len() as u64);
            out.extend_from_slice(l);
        }
        out.into_boxed_slice()
    }
}

/// A varint length and the bytes after it (for keys built by
/// [`WireSeries::labels_key`]).
fn split_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let mut r = Reader { buf: b };
    let n = r.varint().ok()?;
    Some((usize::try_from(n).ok()?, r.buf))
}

/// Calls `f` with each `TimeSeries` of the `WriteRequest` in `body`, in
/// order. Stops at the first decoding error (series before it have been
/// handed out already; the caller decides what to keep) or when `f` returns
/// an error, which is passed through.
pub(crate) fn for_each_series<'a, E: From<DecodeError>>(
    body: &'a [u8],
    mut f: impl FnMut(&WireSeries<'a>) -> Result<(), E>,
) -> Result<(), E> {
    let mut req = Reader { buf: body };
    let mut series = WireSeries::default();
    while !req.buf.is_empty() {
        let (field, wire) = req.key().map_err(DecodeError::from)?;
        if field != 1 || wire != 2 {
            req.skip(wire).map_err(DecodeError::from)?;
            continue;
        }
        let mut ts = Reader {
            buf: req.bytes().map_err(DecodeError::from)?,
        };
        series.labels.clear();
        series.samples.clear();
        series.histograms.clear();
        while !ts.buf.is_empty() {
            match ts.key().map_err(DecodeError::from)? {
                (1, 2) => series.labels.push(ts.bytes().map_err(DecodeError::from)?),
                (2, 2) => series
                    .samples
                    .push(sample(ts.bytes().map_err(DecodeError::from)?)?),
                (4, 2) => series
                    .histograms
                    .push(ts.bytes().map_err(DecodeError::from)?),
                (_, wire) => ts.skip(wire).map_err(DecodeError::from)?,
            }
        }
        f(&series)?;
    }
    Ok(())
}

/// The `metadata` entries (field 3) of the `WriteRequest` in `body`, decoded
/// with prost: they are few (Prometheus sends them in their own requests,
/// once a minute) and kept, so the allocations do not matter. Series are
/// skipped without being looked at.
pub(crate) fn metadata(body: &[u8]) -> Result<Vec<pb::MetricMetadata>, DecodeError> {
    let mut req = Reader { buf: body };
    let mut out = Vec::new();
    while !req.buf.is_empty() {
        match req.key()? {
            (3, 2) => {
                let msg = req.bytes()?;
                out.push(
                    <pb::MetricMetadata as prost::Message>::decode(msg)
                        .map_err(|_| DecodeError("invalid metadata entry"))?,
                );
            }
            (_, wire) => req.skip(wire)?,
        }
    }
    Ok(out)
}

/// One `histograms` payload of a [`WireSeries`], decoded.
pub(crate) fn histogram(msg: &[u8]) -> Result<pb::Histogram, DecodeError> {
    <pb::Histogram as prost::Message>::decode(msg).map_err(|_| DecodeError("invalid histogram"))
}

fn sample(msg: &[u8]) -> Result<(i64, f64), DecodeError> {
    let mut r = Reader { buf: msg };
    let (mut t, mut v) = (0i64, 0f64);
    while !r.buf.is_empty() {
        match r.key()? {
            (1, 1) => v = f64::from_bits(r.fixed64()?),
            // int64 is the two's complement of the varint.
            (2, 0) => t = r.varint()? as i64,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((t, v))
}

/// Name and value of an encoded `prometheus.Label`.
pub(crate) fn label(msg: &[u8]) -> Result<(&str, &str), DecodeError> {
    let mut r = Reader { buf: msg };
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !r.buf.is_empty() {
        match r.key()? {
            (1, 2) => name = r.bytes()?,
            (2, 2) => value = r.bytes()?,
            (_, wire) => r.skip(wire)?,
        }
    }
    let utf8 = |b| std::str::from_utf8(b).map_err(|_| DecodeError("label is not valid UTF-8"));
    Ok((utf8(name)?, utf8(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use strata_proto::prometheus as pb;

    fn request() -> pb::WriteRequest {
        let label = |n: &str, v: &str| pb::Label {
            name: n.into(),
            value: v.into(),
        };
        pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "ü")],
                    samples: vec![
                        pb::Sample {
                            value: 1.5,
                            timestamp: -5,
                        },
                        pb::Sample {
                            value: f64::NAN,
                            timestamp: 1_700_000_000_000,
                        },
                    ],
                    exemplars: vec![pb::Exemplar {
                        labels: vec![label("trace_id", "x")],
                        value: 1.0,
                        timestamp: 3,
                    }],
                    ..Default::default()
                },
                pb::TimeSeries {
                    labels: vec![label("__name__", "b"), label("", "")],
                    samples: vec![pb::Sample::default()],
                    ..Default::default()
                },
            ],
            metadata: vec![pb::MetricMetadata {
                metric_family_name: "up".into(),
                ..Default::default()
            }],
        }
    }

    type Decoded = Vec<(Vec<(String, String)>, Vec<(i64, f64)>)>;

    fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
        let mut out = Vec::new();
        for_each_series(body, |s| {
            let labels = s
                .labels
                .iter()
                .map(|l| label(l).map(|(n, v)| (n.to_string(), v.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            out.push((labels, s.samples.clone()));
            Ok::<_, DecodeError>(())
        })?;
        Ok(out)
    }

    #[test]
    fn decodes_what_prost_encodes() {
        let req = request();
        let got = decode(&req.encode_to_vec()).expect("decode");
        assert_eq!(got.len(), 2);
        for (g, want) in got.iter().zip(&req.timeseries) {
            let labels: Vec<(String, String)> = want
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            assert_eq!(g.0, labels);
            assert_eq!(g.1.len(), want.samples.len());
            for ((t, v), s) in g.1.iter().zip(&want.samples) {
                assert_eq!(*t, s.timestamp);
                assert_eq!(v.to_bits(), s.value.to_bits());
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_never_a_panic() {
        // Without the trailing metadata, whose absence is a valid message.
        let mut req = request();
        req.metadata.clear();
        let body = req.encode_to_vec();
        for cut in 0..body.len() {
            // A cut between two series decodes the first ones; anything
            // else must be reported.
            if let Ok(got) = decode(&body[..cut]) {
                assert!(got.len() < 2, "cut at {cut} decoded everything");
            }
        }
    }

    #[test]
    fn rejects_bad_utf8_and_groups() {
        let mut bad = pb::WriteRequest::default();
        bad.timeseries.push(pb::TimeSeries {
            labels: vec![pb::Label {
                name: "a".into(),
                value: "b".into(),
            }],
            ..Default::default()
        });
        let mut body = bad.encode_to_vec();
        let last = body.len() - 1;
        body[last] = 0xff; // the value "b" becomes an invalid byte
        assert_eq!(
            decode(&body).unwrap_err(),
            DecodeError("label is not valid UTF-8")
        );
        // Field 1 with wire type 3 (start group).
        assert!(decode(&[0x0b]).is_err());
        assert!(decode(&[0x0a, 0x05, 0x0a]).is_err());
    }

    #[test]
    fn labels_key_round_trips() {
        let body = request().encode_to_vec();
        let mut keys = Vec::new();
        for_each_series(&body, |s| {
            let key = s.labels_key();
            assert!(s.labels_equal(&key));
            keys.push((s.labels_hash(), key));
            Ok::<_, DecodeError>(())
        })
        .expect("decode");
        assert_ne!(keys[0].0, keys[1].0);
        let mut n = 0;
        for_each_series(&body, |s| {
            assert_eq!(s.labels_equal(&keys[0].1), n == 0);
            n += 1;
            Ok::<_, DecodeError>(())
        })
        .expect("decode");
    }
}
