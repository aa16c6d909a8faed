//! Decoding one StoreAPI `SeriesBatch` frame the way the querier used to
//! (prost's generated types, then each label copied into `Labels`) against
//! `strata_querier::wire` (in place, interned labels, shared chunk bytes).
//!
//! The frame: 64 series (Thanos' default response batch size) with 8
//! cAdvisor-like labels each and one 120-sample-sized XOR chunk.
//!
//! `cargo bench -p strata-querier --bench series_decode`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use strata_proto::thanos::{
    series_response, AggrChunk, Chunk, Label, Series, SeriesBatch, SeriesResponse,
};
use strata_querier::proxy::MergedSeries;
use strata_querier::wire::{Frame, SeriesCodec};
use strata_tsdb::labels::Labels;
use tonic::codec::Codec;

fn frame() -> Bytes {
    let series = (0..64)
        .map(|i| Series {
            labels: [
                ("__name__", "container_memory_working_set_bytes".to_string()),
                ("cluster", "cluster1".to_string()),
                ("container", format!("app-{}", i % 4)),
                ("id", format!("/kubepods/burstable/pod{i:08x}")),
                ("image", "registry.example.com/app:1.2.3".to_string()),
                ("instance", format!("10.0.{}.{}:10250", i / 16, i % 16)),
                ("namespace", format!("ns-{}", i % 4)),
                ("pod", format!("app-{i}-7d9f8c6b5-x2x4z")),
            ]
            .into_iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v,
            })
            .collect(),
            chunks: vec![AggrChunk {
                min_time: 0,
                max_time: 3_570_000,
                raw: Some(Chunk {
                    r#type: 0,
                    data: Bytes::from(vec![0x5a; 160]),
                    hash: 0,
                }),
                ..Default::default()
            }],
        })
        .collect();
    Bytes::from(
        SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch { series })),
        }
        .encode_to_vec(),
    )
}

/// The querier's decoding before `strata_querier::wire`.
fn with_prost(frame: &Bytes) -> Vec<MergedSeries> {
    let msg = SeriesResponse::decode(frame.clone()).expect("valid frame");
    let Some(series_response::Result::Batch(b)) = msg.result else {
        panic!("a batch frame");
    };
    b.series
        .into_iter()
        .map(|s| MergedSeries {
            labels: Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value))),
            chunks: s.chunks,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let f = frame();
    // Both decoders agree before anything is timed.
    let mut dec = SeriesCodec::new(Vec::new()).decoder();
    let Ok(Frame::Series(ours)) = dec.frame(&f) else {
        panic!("a batch frame");
    };
    assert_eq!(ours, with_prost(&f));

    let mut g = c.benchmark_group("series_frame_64");
    g.throughput(Throughput::Elements(64));
    g.bench_function("prost_then_labels", |b| b.iter(|| with_prost(&f)));
    g.bench_function("wire_interned", |b| {
        b.iter(|| {
            // A new decoder per frame: the interner starts empty, as for
            // a store's first frame (later frames of a call find more
            // strings already interned).
            let mut d = SeriesCodec::new(Vec::new()).decoder();
            d.frame(&f).expect("valid frame")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
