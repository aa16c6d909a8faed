//! An in-place decoder of StoreAPI `Series` response frames.
//!
//! prost would decode every label of every series into two `String`s
//! (`thanos.Label`), which [`crate::proxy`] then copied into the querier's
//! `Labels` (`Arc<str>` per name and value). In profiles of federated
//! instant queries that decoding was a fifth of the querier's CPU, nearly
//! all of it allocation. [`SeriesCodec`] replaces prost's codec on the
//! client side of `/thanos.Store/Series` only (requests are still encoded
//! by prost): it walks each frame with [`strata_proto::wire::Reader`],
//! turns label strings into `Arc<str>` through a per-call interner (a
//! store's answer repeats the same names, metric names and cluster values
//! in every series), and keeps chunk bytes as slices of the frame
//! (`Bytes`, no copy).
//!
//! What it decodes, with the field numbers of `store/storepb/rpc.proto`
//! and `types.proto`:
//! - `SeriesResponse`: `series` = 1, `warning` = 2, `hints` = 3 (skipped:
//!   the querier does not use store hints), `batch` = 4 (`SeriesBatch`,
//!   `series` = 1, repeated);
//! - `Series`: `labels` = 1 (`Label`: `name` = 1, `value` = 2), `chunks` = 2;
//! - `AggrChunk`: `min_time` = 1, `max_time` = 2, `raw`/`count`/`sum`/
//!   `min`/`max`/`counter` = 3…8 (`Chunk`: `type` = 1, `data` = 2,
//!   `hash` = 3).
//!
//! As prost would: unknown fields are skipped, a repeated singular field
//! keeps its last value, and for the `result` oneof the last member wins.
//! Labels are filtered as the merge needs them: empty values dropped (a
//! Prometheus label set has none), the replica labels being stripped left
//! out, then sorted by name if the store did not send them sorted.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use strata_proto::thanos::{AggrChunk, Chunk, SeriesRequest};
use strata_proto::wire::{Reader, WireError};
use strata_tsdb::labels::{Label, Labels};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;

use crate::proxy::MergedSeries;

/// One decoded `SeriesResponse`.
#[derive(Debug)]
pub enum Frame {
    /// The series of a `series` or a `batch` frame, in order.
    Series(Vec<MergedSeries>),
    Warning(String),
    /// Hints, or an empty frame.
    Other,
}

/// Most distinct strings one call interns; past it strings are allocated
/// one by one (a store answering with millions of distinct label values
/// must not make the interner the biggest thing in memory).
const MAX_INTERNED: usize = 1 << 16;

/// Strings of one call, shared between the series that repeat them.
#[derive(Default)]
struct Interner {
    /// foldhash, not SipHash: the keys are short and come from stores the
    /// querier was configured to trust with its data anyway.
    set: HashSet<Arc<str>, foldhash::fast::RandomState>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.set.len() < MAX_INTERNED {
            self.set.insert(a.clone());
        }
        a
    }
}

/// The client codec of `/thanos.Store/Series` (module docs).
pub struct SeriesCodec {
    strip: Vec<String>,
}

impl SeriesCodec {
    /// A codec that leaves `strip` (the replica labels under
    /// deduplication) out of every label set.
    pub fn new(strip: Vec<String>) -> Self {
        SeriesCodec { strip }
    }
}

impl Codec for SeriesCodec {
    type Encode = SeriesRequest;
    type Decode = Frame;
    type Encoder = tonic_prost::ProstEncoder<SeriesRequest>;
    type Decoder = SeriesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(Default::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SeriesDecoder {
            strip: self.strip.clone(),
            interner: Interner::default(),
        }
    }
}

/// Decodes the frames of one call; see [`SeriesCodec`].
pub struct SeriesDecoder {
    strip: Vec<String>,
    interner: Interner,
}

impl Decoder for SeriesDecoder {
    type Item = Frame;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Frame>, Status> {
        // One message: usually contiguous, so this shares rather than copies.
        let frame = buf.copy_to_bytes(buf.remaining());
        self.frame(&frame)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding SeriesResponse: {e}")))
    }
}

impl SeriesDecoder {
    /// Decodes one `SeriesResponse` held in `frame`.
    pub fn frame(&mut self, frame: &Bytes) -> Result<Frame, WireError> {
        let mut r = Reader::new(frame);
        let mut out = Frame::Other;
        while !r.is_empty() {
            match r.key()? {
                (1, 2) => {
                    let s = r.bytes()?;
                    out = Frame::Series(vec![self.series(frame, s)?]);
                }
                (2, 2) => out = Frame::Warning(r.str()?.to_string()),
                (3, 2) => {
                    r.bytes()?;
                    out = Frame::Other;
                }
                (4, 2) => {
                    let mut b = Reader::new(r.bytes()?);
                    let mut series = Vec::new();
                    while !b.is_empty() {
                        match b.key()? {
                            (1, 2) => {
                                let s = b.bytes()?;
                                series.push(self.series(frame, s)?);
                            }
                            (_, wire) => b.skip(wire)?,
                        }
                    }
                    out = Frame::Series(series);
                }
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(out)
    }

    fn series(&mut self, frame: &Bytes, msg: &[u8]) -> Result<MergedSeries, WireError> {
        let mut r = Reader::new(msg);
        let mut labels: Vec<Label> = Vec::new();
        let mut chunks = Vec::new();
        while !r.is_empty() {
            match r.key()? {
                (1, 2) => {
                    let (name, value) = label(r.bytes()?)?;
                    if !value.is_empty() && !self.strip.iter().any(|s| s == name) {
                        labels.push(Label {
                            name: self.interner.get(name),
                            value: self.interner.get(value),
                        });
                    }
                }
                (2, 2) => chunks.push(aggr_chunk(frame, r.bytes()?)?),
                (_, wire) => r.skip(wire)?,
            }
        }
        if !labels.windows(2).all(|w| w[0].name < w[1].name) {
            // Stable, so with a repeated name the last one wins, as in
            // `Labels::from_pairs`.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            let mut dedup: Vec<Label> = Vec::with_capacity(labels.len());
            for l in labels {
                match dedup.last_mut() {
                    Some(last) if last.name == l.name => *last = l,
                    _ => dedup.push(l),
                }
            }
            labels = dedup;
        }
        Ok(MergedSeries {
            labels: Labels::from_sorted(labels),
            chunks,
        })
    }
}

fn label(msg: &[u8]) -> Result<(&str, &str), WireError> {
    let mut r = Reader::new(msg);
    let (mut name, mut value) = ("", "");
    while !r.is_empty() {
        match r.key()? {
            (1, 2) => name = r.str()?,
            (2, 2) => value = r.str()?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((name, value))
}

fn aggr_chunk(frame: &Bytes, msg: &[u8]) -> Result<AggrChunk, WireError> {
    let mut r = Reader::new(msg);
    let mut c = AggrChunk::default();
    while !r.is_empty() {
        match r.key()? {
            (1, 0) => c.min_time = r.varint()? as i64,
            (2, 0) => c.max_time = r.varint()? as i64,
            (n @ 3..=8, 2) => {
                let ch = Some(chunk(frame, r.bytes()?)?);
                match n {
                    3 => c.raw = ch,
                    4 => c.count = ch,
                    5 => c.sum = ch,
                    6 => c.min = ch,
                    7 => c.max = ch,
                    _ => c.counter = ch,
                }
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(c)
}

fn chunk(frame: &Bytes, msg: &[u8]) -> Result<Chunk, WireError> {
    let mut r = Reader::new(msg);
    let mut c = Chunk::default();
    while !r.is_empty() {
        match r.key()? {
            (1, 0) => c.r#type = r.varint()? as i32,
            (2, 2) => c.data = frame.slice_ref(r.bytes()?),
            (3, 0) => c.hash = r.varint()?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use strata_proto::thanos::{
        series_response, Label as PbLabel, Series, SeriesBatch, SeriesResponse,
    };

    fn pb_series(labels: &[(&str, &str)], t0: i64) -> Series {
        let ch = |ty: i32, d: &[u8]| Chunk {
            r#type: ty,
            data: Bytes::copy_from_slice(d),
            hash: 7,
        };
        Series {
            labels: labels
                .iter()
                .map(|(n, v)| PbLabel {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            chunks: vec![
                AggrChunk {
                    min_time: t0,
                    max_time: t0 + 10,
                    raw: Some(ch(0, b"raw")),
                    ..Default::default()
                },
                AggrChunk {
                    min_time: -5,
                    max_time: 300_000,
                    count: Some(ch(0, b"c")),
                    sum: Some(ch(0, b"s")),
                    min: Some(ch(0, b"mi")),
                    max: Some(ch(0, b"ma")),
                    counter: Some(ch(2, b"ct")),
                    ..Default::default()
                },
            ],
        }
    }

    fn decode(msg: &SeriesResponse, strip: &[&str]) -> Result<Frame, WireError> {
        let mut d = SeriesDecoder {
            strip: strip.iter().map(|s| s.to_string()).collect(),
            interner: Interner::default(),
        };
        d.frame(&Bytes::from(msg.encode_to_vec()))
    }

    /// What prost and the old conversion made of the same frame.
    fn reference(s: Series, strip: &[&str]) -> MergedSeries {
        MergedSeries {
            labels: Labels::from_pairs(
                s.labels
                    .into_iter()
                    .filter(|l| !strip.contains(&l.name.as_str()))
                    .map(|l| (l.name, l.value)),
            ),
            chunks: s.chunks,
        }
    }

    #[test]
    fn frames_decode_as_prost_decodes_them() {
        let a = pb_series(&[("__name__", "up"), ("a", "1"), ("empty", "")], 0);
        // Unsorted, with a replica label to strip.
        let b = pb_series(&[("z", "9"), ("__name__", "up"), ("replica", "r0")], 100);
        let single = SeriesResponse {
            result: Some(series_response::Result::Series(a.clone())),
        };
        let Frame::Series(got) = decode(&single, &["replica"]).unwrap() else {
            panic!("not a series frame");
        };
        assert_eq!(got, vec![reference(a.clone(), &["replica"])]);

        let batch = SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch {
                series: vec![a.clone(), b.clone()],
            })),
        };
        let Frame::Series(got) = decode(&batch, &["replica"]).unwrap() else {
            panic!("not a batch frame");
        };
        assert_eq!(
            got,
            vec![reference(a, &["replica"]), reference(b, &["replica"])]
        );
        assert_eq!(
            got[1].labels.to_string(),
            r#"{__name__="up", z="9"}"#,
            "sorted, replica stripped"
        );

        let warn = SeriesResponse {
            result: Some(series_response::Result::Warning("careful".into())),
        };
        assert!(matches!(decode(&warn, &[]).unwrap(), Frame::Warning(w) if w == "careful"));
        let hints = SeriesResponse {
            result: Some(series_response::Result::Hints(prost_types::Any {
                type_url: "x".into(),
                value: vec![1, 2],
            })),
        };
        assert!(matches!(decode(&hints, &[]).unwrap(), Frame::Other));
    }

    #[test]
    fn strings_are_shared_within_a_call() {
        let s = pb_series(&[("__name__", "up"), ("cluster", "c1")], 0);
        let batch = SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch {
                series: vec![s.clone(), s],
            })),
        };
        let Frame::Series(got) = decode(&batch, &[]).unwrap() else {
            panic!("not a batch frame");
        };
        assert_eq!(got[0].labels.get("cluster"), Some("c1"));
        assert_eq!(got[1].labels.get("cluster"), Some("c1"));
        let first = got[0].labels.iter().nth(1).unwrap();
        let second = got[1].labels.iter().nth(1).unwrap();
        assert!(Arc::ptr_eq(&first.value, &second.value));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let ok = SeriesResponse {
            result: Some(series_response::Result::Series(pb_series(
                &[("__name__", "up")],
                0,
            ))),
        }
        .encode_to_vec();
        let mut d = SeriesDecoder {
            strip: Vec::new(),
            interner: Interner::default(),
        };
        // Every truncation of a valid frame either decodes (a prefix that
        // happens to end on a field boundary) or is an error.
        for n in 0..ok.len() {
            let _ = d.frame(&Bytes::copy_from_slice(&ok[..n]));
        }
        assert!(d.frame(&Bytes::from_static(&[0x0a, 0x05, 0x0a])).is_err());
        // A label that is not UTF-8.
        let bad = [0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        assert!(d.frame(&Bytes::copy_from_slice(&bad)).is_err());
        // A group wire type.
        assert!(d.frame(&Bytes::from_static(&[0x0b])).is_err());
    }
}
