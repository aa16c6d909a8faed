//! Golden wire tests: representative messages against bytes computed by hand
//! from the protobuf encoding rules, one commented line per field.
//!
//! A Go peer (gogoproto marshalers) writes fields in field-number order and
//! omits proto3 defaults, except inside a `oneof` and for gogo
//! `nullable=false` singular messages, which it always writes; prost does the
//! same when those are `Some`. These bytes are therefore what Thanos and
//! Prometheus send and expect. If one of these tests fails after a `.proto`
//! edit, the edit broke wire compatibility.
//!
//! Reminders: a key is `(field << 3) | wire_type` as a varint; wire types are
//! 0 varint, 1 fixed64, 2 length-delimited. Field 16 as a varint key is `80 01`.

use std::fmt::Debug;

use prost::{Message, Name};
use prost_types::{Any, Duration};
use strata_proto::{hintspb, prometheus, prometheus_copy, thanos, thanos::info};

/// Encodes `msg` and compares with `expected`; decodes `expected` and compares with `msg`.
fn check<M: Message + Default + PartialEq + Debug>(msg: &M, expected: &[u8]) {
    let got = msg.encode_to_vec();
    assert_eq!(
        hex(&got),
        hex(expected),
        "encoding of {msg:?} differs (left: ours, right: expected)"
    );
    assert_eq!(msg.encoded_len(), expected.len());
    let decoded = M::decode(expected).expect("decode expected bytes");
    assert_eq!(&decoded, msg);
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn label(name: &str, value: &str) -> thanos::Label {
    thanos::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn matcher(t: thanos::label_matcher::Type, name: &str, value: &str) -> thanos::LabelMatcher {
    thanos::LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

/// A real one-sample XOR chunk (t=1000, v=1.0) as Prometheus writes it:
/// big-endian sample count, zigzag varint timestamp, raw float64 bits.
const XOR_CHUNK: &[u8] = &[
    0x00, 0x01, // 1 sample
    0xd0, 0x0f, // t = 1000, zigzag 2000
    0x3f, 0xf0, 0, 0, 0, 0, 0, 0, // v = 1.0
];

#[test]
fn series_request() {
    use thanos::label_matcher::Type;
    let hints = hintspb::SeriesRequestHints {
        block_matchers: vec![matcher(Type::Eq, "a", "b")],
        enable_query_stats: true,
    };
    let msg = thanos::SeriesRequest {
        min_time: 1000,
        max_time: 2000,
        matchers: vec![
            matcher(Type::Eq, "job", "api"),
            matcher(Type::Re, "env", "p.*"),
        ],
        max_resolution_window: 300_000,
        aggregates: vec![thanos::Aggr::Count as i32, thanos::Aggr::Sum as i32],
        partial_response_disabled: false,
        partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        skip_chunks: true,
        hints: Some(Any::from_msg(&hints).unwrap()),
        step: 0,
        range: 0,
        query_hints: Some(thanos::QueryHints {
            step_millis: 30_000,
            func: Some(thanos::Func {
                name: "rate".into(),
            }),
            grouping: Some(thanos::Grouping {
                by: true,
                labels: vec!["job".into()],
            }),
            range: Some(thanos::Range { millis: 300_000 }),
            ..Default::default()
        }),
        shard_info: Some(thanos::ShardInfo {
            shard_index: 1,
            total_shards: 4,
            by: true,
            labels: vec!["job".into()],
        }),
        without_replica_labels: vec!["replica".into(), "rule_replica".into()],
        limit: 1000,
        response_batch_size: 64,
    };
    let expected = cat(&[
        &[0x08, 0xe8, 0x07], // 1 min_time = 1000
        &[0x10, 0xd0, 0x0f], // 2 max_time = 2000
        // 3 matchers[0] {type EQ (0, omitted), name "job", value "api"}
        &[0x1a, 0x0a, 0x12, 0x03],
        b"job",
        &[0x1a, 0x03],
        b"api",
        // 3 matchers[1] {type RE = 2, name "env", value "p.*"}
        &[0x1a, 0x0c, 0x08, 0x02, 0x12, 0x03],
        b"env",
        &[0x1a, 0x03],
        b"p.*",
        &[0x20, 0xe0, 0xa7, 0x12], // 4 max_resolution_window = 300000
        &[0x2a, 0x02, 0x01, 0x02], // 5 aggregates, packed [COUNT, SUM]
        // 6 partial_response_disabled = false: omitted
        &[0x38, 0x01], // 7 partial_response_strategy = ABORT
        &[0x40, 0x01], // 8 skip_chunks = true
        // 9 hints: Any, 60 bytes
        &[0x4a, 0x3c],
        &[0x0a, 0x2e], // Any.type_url, 46 bytes
        b"type.googleapis.com/hintspb.SeriesRequestHints",
        &[0x12, 0x0a], // Any.value, 10 bytes: SeriesRequestHints
        &[0x0a, 0x06, 0x12, 0x01, b'a', 0x1a, 0x01, b'b'], // block_matchers[0] {a="b"}
        &[0x10, 0x01], // enable_query_stats = true
        // 10 step, 11 range = 0: omitted
        // 12 query_hints, 27 bytes
        &[0x62, 0x1b],
        &[0x08, 0xb0, 0xea, 0x01], // step_millis = 30000
        &[0x12, 0x06, 0x0a, 0x04], // func {name "rate"}
        b"rate",
        &[0x22, 0x07, 0x08, 0x01, 0x1a, 0x03], // grouping (field 4) {by true, labels (field 3) ["job"]}
        b"job",
        &[0x2a, 0x04, 0x08, 0xe0, 0xa7, 0x12], // range {millis 300000}
        // 13 shard_info {shard_index 1, total_shards 4, by true, labels ["job"]}
        &[0x6a, 0x0b, 0x08, 0x01, 0x10, 0x04, 0x18, 0x01, 0x22, 0x03],
        b"job",
        &[0x72, 0x07], // 14 without_replica_labels[0]
        b"replica",
        &[0x72, 0x0c], // 14 without_replica_labels[1]
        b"rule_replica",
        &[0x78, 0xe8, 0x07], // 15 limit = 1000
        &[0x80, 0x01, 0x40], // 16 response_batch_size = 64 (key 128 = 80 01)
    ]);
    check(&msg, &expected);
    let any = msg.hints.as_ref().unwrap();
    assert_eq!(any.to_msg::<hintspb::SeriesRequestHints>().unwrap(), hints);
}

#[test]
fn series_response_series_with_raw_xor_chunk() {
    let msg = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Series(thanos::Series {
            labels: vec![label("__name__", "up"), label("job", "api")],
            chunks: vec![thanos::AggrChunk {
                min_time: 1000,
                max_time: 2000,
                raw: Some(thanos::Chunk {
                    r#type: thanos::chunk::Encoding::Xor as i32,
                    data: XOR_CHUNK.to_vec().into(),
                    hash: u64::MAX,
                }),
                ..Default::default()
            }],
        })),
    };
    let expected = cat(&[
        &[0x0a, 0x3f],             // SeriesResponse.series (1), 63 bytes
        &[0x0a, 0x0e, 0x0a, 0x08], // Series.labels[0], 14 bytes: name
        b"__name__",
        &[0x12, 0x02], // value
        b"up",
        &[0x0a, 0x0a, 0x0a, 0x03], // Series.labels[1], 10 bytes
        b"job",
        &[0x12, 0x03],
        b"api",
        &[0x12, 0x21],       // Series.chunks[0]: AggrChunk, 33 bytes
        &[0x08, 0xe8, 0x07], // min_time = 1000
        &[0x10, 0xd0, 0x0f], // max_time = 2000
        &[0x1a, 0x19],       // raw (3): Chunk, 25 bytes
        // type = XOR = 0: omitted (remote read's XOR would be 1)
        &[0x12, 0x0c], // data, 12 bytes
        XOR_CHUNK,
        // hash = u64::MAX: ten-byte varint
        &[
            0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    ]);
    check(&msg, &expected);
}

#[test]
fn series_response_warning() {
    let msg = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Warning("boom".into())),
    };
    check(&msg, &cat(&[&[0x12, 0x04], b"boom"])); // 2 warning
                                                  // A oneof member is written even when it holds the default value.
    let empty = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Warning(String::new())),
    };
    check(&empty, &[0x12, 0x00]);
    // No member at all: nothing.
    check(&thanos::SeriesResponse::default(), &[]);
}

#[test]
fn series_response_hints() {
    let hints = hintspb::SeriesResponseHints {
        queried_blocks: vec![hintspb::Block {
            id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        }],
        query_stats: Some(hintspb::QueryStats {
            blocks_queried: 1,
            data_downloaded_size_sum: 1024,
            get_all_duration: Some(Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            // Go (nullable=false) always writes this field: an empty message.
            merge_duration: Some(Duration::default()),
            ..Default::default()
        }),
    };
    let msg = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Hints(
            Any::from_msg(&hints).unwrap(),
        )),
    };
    let expected = cat(&[
        &[0x1a, 0x67], // SeriesResponse.hints (3): Any, 103 bytes
        &[0x0a, 0x2f], // type_url, 47 bytes
        b"type.googleapis.com/hintspb.SeriesResponseHints",
        &[0x12, 0x34],             // value, 52 bytes: SeriesResponseHints
        &[0x0a, 0x1c, 0x0a, 0x1a], // queried_blocks[0] {id: 26-char ULID}
        b"01ARZ3NDEKTSV4RRFFQ69G5FAV",
        &[0x12, 0x14],             // query_stats, 20 bytes
        &[0x08, 0x01],             // blocks_queried = 1
        &[0xa0, 0x01, 0x80, 0x08], // data_downloaded_size_sum (20) = 1024
        // get_all_duration (21) {seconds 1, nanos 500000000}
        &[
            0xaa, 0x01, 0x08, 0x08, 0x01, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01,
        ],
        &[0xb2, 0x01, 0x00], // merge_duration (22): empty message, still written
    ]);
    check(&msg, &expected);
    assert_eq!(
        hintspb::SeriesResponseHints::type_url(),
        "type.googleapis.com/hintspb.SeriesResponseHints"
    );
    let Some(thanos::series_response::Result::Hints(any)) = &msg.result else {
        unreachable!()
    };
    assert_eq!(any.to_msg::<hintspb::SeriesResponseHints>().unwrap(), hints);
}

#[test]
fn series_response_batch() {
    let msg = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Batch(
            thanos::SeriesBatch {
                series: vec![
                    thanos::Series {
                        labels: vec![label("a", "1")],
                        chunks: vec![],
                    },
                    thanos::Series {
                        labels: vec![label("a", "2")],
                        chunks: vec![thanos::AggrChunk {
                            min_time: 0,
                            max_time: 1,
                            count: Some(thanos::Chunk {
                                r#type: thanos::chunk::Encoding::Xor as i32,
                                data: vec![0xaa].into(),
                                hash: 0,
                            }),
                            sum: Some(thanos::Chunk {
                                r#type: thanos::chunk::Encoding::FloatHistogram as i32,
                                data: vec![0xbb].into(),
                                hash: 0,
                            }),
                            ..Default::default()
                        }],
                    },
                ],
            },
        )),
    };
    let expected = cat(&[
        &[0x22, 0x24], // SeriesResponse.batch (4), 36 bytes
        // series[0] {labels [a="1"]}
        &[0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1'],
        // series[1], 24 bytes: labels [a="2"]
        &[0x0a, 0x18, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'2'],
        &[0x12, 0x0e], // chunks[0]: AggrChunk, 14 bytes; min_time 0 omitted
        &[0x10, 0x01], // max_time = 1
        &[0x22, 0x03, 0x12, 0x01, 0xaa], // count (4) {type XOR omitted, data aa}
        &[0x2a, 0x05, 0x08, 0x02, 0x12, 0x01, 0xbb], // sum (5) {type FLOAT_HISTOGRAM = 2, data bb}
    ]);
    check(&msg, &expected);
}

#[test]
fn label_names() {
    use thanos::label_matcher::Type;
    let req = thanos::LabelNamesRequest {
        partial_response_disabled: false,
        partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        start: 1000,
        end: 2000,
        hints: Some(
            Any::from_msg(&hintspb::LabelNamesRequestHints {
                block_matchers: vec![matcher(Type::Nre, "x", "y")],
            })
            .unwrap(),
        ),
        matchers: vec![matcher(Type::Neq, "job", "api")],
        without_replica_labels: vec!["replica".into()],
        limit: 10,
    };
    let expected = cat(&[
        &[0x10, 0x01],       // 2 partial_response_strategy = ABORT
        &[0x18, 0xe8, 0x07], // 3 start = 1000
        &[0x20, 0xd0, 0x0f], // 4 end = 2000
        &[0x2a, 0x40],       // 5 hints: Any, 64 bytes
        &[0x0a, 0x32],       // type_url, 50 bytes
        b"type.googleapis.com/hintspb.LabelNamesRequestHints",
        &[0x12, 0x0a], // value: block_matchers[0] {NRE = 3, x, y}
        &[0x0a, 0x08, 0x08, 0x03, 0x12, 0x01, b'x', 0x1a, 0x01, b'y'],
        &[0x32, 0x0c, 0x08, 0x01, 0x12, 0x03], // 6 matchers[0] {NEQ = 1, job, api}
        b"job",
        &[0x1a, 0x03],
        b"api",
        &[0x3a, 0x07], // 7 without_replica_labels[0]
        b"replica",
        &[0x40, 0x0a], // 8 limit = 10
    ]);
    check(&req, &expected);

    let resp = thanos::LabelNamesResponse {
        names: vec!["__name__".into(), "job".into()],
        warnings: vec!["partial".into()],
        hints: Some(
            Any::from_msg(&hintspb::LabelNamesResponseHints {
                queried_blocks: vec![hintspb::Block { id: "b1".into() }],
            })
            .unwrap(),
        ),
    };
    let expected = cat(&[
        &[0x0a, 0x08], // 1 names[0]
        b"__name__",
        &[0x0a, 0x03], // 1 names[1]
        b"job",
        &[0x12, 0x07], // 2 warnings[0]
        b"partial",
        &[0x1a, 0x3d], // 3 hints: Any, 61 bytes
        &[0x0a, 0x33], // type_url, 51 bytes
        b"type.googleapis.com/hintspb.LabelNamesResponseHints",
        &[0x12, 0x06, 0x0a, 0x04, 0x0a, 0x02], // value: queried_blocks[0] {id "b1"}
        b"b1",
    ]);
    check(&resp, &expected);
}

#[test]
fn label_values() {
    let req = thanos::LabelValuesRequest {
        label: "job".into(),
        partial_response_disabled: true,
        partial_response_strategy: thanos::PartialResponseStrategy::Warn as i32,
        start: 1,
        end: 2,
        hints: None,
        matchers: vec![matcher(thanos::label_matcher::Type::Eq, "env", "prod")],
        without_replica_labels: vec!["replica".into()],
        limit: 5,
    };
    let expected = cat(&[
        &[0x0a, 0x03], // 1 label
        b"job",
        &[0x10, 0x01], // 2 partial_response_disabled = true
        // 3 partial_response_strategy = WARN (0): omitted
        &[0x20, 0x01], // 4 start = 1
        &[0x28, 0x02], // 5 end = 2
        // 6 hints: None, omitted
        &[0x3a, 0x0b, 0x12, 0x03], // 7 matchers[0] {EQ omitted, env, prod}
        b"env",
        &[0x1a, 0x04],
        b"prod",
        &[0x42, 0x07], // 8 without_replica_labels[0]
        b"replica",
        &[0x48, 0x05], // 9 limit = 5
    ]);
    check(&req, &expected);

    let resp = thanos::LabelValuesResponse {
        values: vec!["api".into(), "db".into()],
        warnings: vec![],
        hints: None,
    };
    let expected = cat(&[
        &[0x0a, 0x03], // 1 values[0]
        b"api",
        &[0x0a, 0x02], // 1 values[1]
        b"db",
    ]);
    check(&resp, &expected);
}

#[test]
fn info_response() {
    let msg = info::InfoResponse {
        label_sets: vec![thanos::ZLabelSet {
            labels: vec![label("cluster", "eu1"), label("replica", "a")],
        }],
        component_type: "sidecar".into(),
        store: Some(info::StoreInfo {
            min_time: i64::MIN,
            max_time: i64::MAX,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: vec![
                info::TsdbInfo {
                    labels: Some(thanos::ZLabelSet {
                        labels: vec![label("cluster", "eu1")],
                    }),
                    min_time: 1000,
                    max_time: 2000,
                },
                // Go (nullable=false) writes empty labels as an empty message.
                info::TsdbInfo {
                    labels: Some(thanos::ZLabelSet::default()),
                    min_time: 0,
                    max_time: 0,
                },
            ],
            supports_projections: false,
        }),
        rules: Some(info::RulesInfo {}),
        metric_metadata: None,
        targets: None,
        exemplars: Some(info::ExemplarsInfo {
            min_time: 1,
            max_time: 2,
        }),
        query: None,
        status: None,
    };
    let expected = cat(&[
        &[0x0a, 0x1e],             // 1 label_sets[0], 30 bytes
        &[0x0a, 0x0e, 0x0a, 0x07], // labels[0], 14 bytes
        b"cluster",
        &[0x12, 0x03],
        b"eu1",
        &[0x0a, 0x0c, 0x0a, 0x07], // labels[1], 12 bytes
        b"replica",
        &[0x12, 0x01],
        b"a",
        &[0x12, 0x07], // 2 ComponentType
        b"sidecar",
        &[0x1a, 0x37], // 3 store: StoreInfo, 55 bytes
        // min_time = i64::MIN: ten-byte varint
        &[
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ],
        // max_time = i64::MAX: nine-byte varint
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        &[0x18, 0x01], // supports_sharding = true
        // (field 4 is reserved)
        &[0x28, 0x01], // supports_without_replica_labels (5) = true
        &[0x32, 0x18], // tsdb_infos[0] (6), 24 bytes
        &[0x0a, 0x10, 0x0a, 0x0e, 0x0a, 0x07], // labels {labels [cluster="eu1"]}
        b"cluster",
        &[0x12, 0x03],
        b"eu1",
        &[0x10, 0xe8, 0x07],       // min_time = 1000
        &[0x18, 0xd0, 0x0f],       // max_time = 2000
        &[0x32, 0x02, 0x0a, 0x00], // tsdb_infos[1] {labels: empty message}
        // supports_projections = false: omitted
        &[0x22, 0x00], // 4 rules: present and empty = "serves the Rules API"
        // 5 metric_metadata, 6 targets: None = not served
        &[0x3a, 0x04, 0x08, 0x01, 0x10, 0x02], // 7 exemplars {min_time 1, max_time 2}
    ]);
    check(&msg, &expected);
}

#[test]
fn thanos_write_request() {
    let series = |samples| prometheus_copy::TimeSeries {
        labels: vec![label("a", "1")],
        samples,
        ..Default::default()
    };
    let msg = thanos::WriteRequest {
        timeseries: vec![series(vec![prometheus_copy::Sample {
            value: 1.0,
            timestamp: 1000,
        }])],
        tenant: "t1".into(),
        replica: 2,
        timeseries_tenant_data: vec![thanos::TimeSeriesTenantTuple {
            timeseries: vec![series(vec![])],
            tenant: "t2".into(),
        }],
    };
    let expected = cat(&[
        &[0x0a, 0x16],                                     // 1 timeseries[0], 22 bytes
        &[0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1'], // labels [a="1"]
        &[0x12, 0x0c],                                     // samples[0], 12 bytes
        &[0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],             // value = 1.0 (fixed64, little-endian)
        &[0x10, 0xe8, 0x07],                               // timestamp = 1000
        &[0x12, 0x02],                                     // 2 tenant
        b"t1",
        &[0x18, 0x02],                                                 // 3 replica = 2
        &[0x22, 0x0e], // 4 timeseriesTenantData[0], 14 bytes
        &[0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1'], // timeseries[0] {labels [a="1"]}
        &[0x12, 0x02],                                                 // tenant
        b"t2",
    ]);
    check(&msg, &expected);
}

fn prom_label(name: &str, value: &str) -> prometheus::Label {
    prometheus::Label {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn remote_write_request() {
    use prometheus::histogram::{Count, ResetHint, ZeroCount};
    let msg = prometheus::WriteRequest {
        timeseries: vec![prometheus::TimeSeries {
            labels: vec![prom_label("__name__", "up"), prom_label("job", "api")],
            samples: vec![prometheus::Sample {
                value: 1.0,
                timestamp: 1000,
            }],
            exemplars: vec![prometheus::Exemplar {
                labels: vec![prom_label("trace_id", "abc")],
                value: 0.5,
                timestamp: 1001,
            }],
            histograms: vec![prometheus::Histogram {
                count: Some(Count::CountInt(5)),
                sum: 10.5,
                schema: 1,
                zero_threshold: 0.5,
                zero_count: Some(ZeroCount::ZeroCountInt(1)),
                positive_spans: vec![prometheus::BucketSpan {
                    offset: -1,
                    length: 2,
                }],
                positive_deltas: vec![2, -1],
                reset_hint: ResetHint::No as i32,
                timestamp: 1000,
                ..Default::default()
            }],
        }],
        metadata: vec![prometheus::MetricMetadata {
            r#type: prometheus::metric_metadata::MetricType::Gauge as i32,
            metric_family_name: "up".into(),
            help: "h".into(),
            unit: "u".into(),
        }],
    };
    let expected = cat(&[
        &[0x0a, 0x72],             // 1 timeseries[0], 114 bytes
        &[0x0a, 0x0e, 0x0a, 0x08], // labels[0], 14 bytes
        b"__name__",
        &[0x12, 0x02],
        b"up",
        &[0x0a, 0x0a, 0x0a, 0x03], // labels[1], 10 bytes
        b"job",
        &[0x12, 0x03],
        b"api",
        &[0x12, 0x0c],                         // samples[0], 12 bytes
        &[0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f], // value = 1.0
        &[0x10, 0xe8, 0x07],                   // timestamp = 1000
        &[0x1a, 0x1d],                         // exemplars[0], 29 bytes
        &[0x0a, 0x0f, 0x0a, 0x08],             // labels[0], 15 bytes
        b"trace_id",
        &[0x12, 0x03],
        b"abc",
        &[0x11, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f], // value = 0.5
        &[0x18, 0xe9, 0x07],                   // timestamp = 1001
        &[0x22, 0x27],                         // histograms[0], 39 bytes, in field order:
        &[0x08, 0x05],                         // 1 count_int = 5 (oneof)
        &[0x19, 0, 0, 0, 0, 0, 0, 0x25, 0x40], // 3 sum = 10.5
        &[0x20, 0x02],                         // 4 schema = 1 (sint32: zigzag 2)
        &[0x29, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f], // 5 zero_threshold = 0.5
        &[0x30, 0x01],                         // 6 zero_count_int = 1 (oneof)
        &[0x5a, 0x04, 0x08, 0x01, 0x10, 0x02], // 11 positive_spans[0] {offset -1 (zigzag 1), length 2}
        &[0x62, 0x02, 0x04, 0x01], // 12 positive_deltas, packed sint64 [2, -1] = zigzag [4, 1]
        &[0x70, 0x02],             // 14 reset_hint = NO
        &[0x78, 0xe8, 0x07],       // 15 timestamp = 1000
        // 2 is reserved
        &[0x1a, 0x0c], // 3 metadata[0], 12 bytes
        &[0x08, 0x02], // type = GAUGE
        &[0x12, 0x02], // metric_family_name
        b"up",
        &[0x22, 0x01, b'h'], // help (4)
        &[0x2a, 0x01, b'u'], // unit (5)
    ]);
    check(&msg, &expected);
}

#[test]
fn remote_read_request() {
    use prometheus::read_request::ResponseType;
    let msg = prometheus::ReadRequest {
        queries: vec![prometheus::Query {
            start_timestamp_ms: 1000,
            end_timestamp_ms: 2000,
            matchers: vec![prometheus::LabelMatcher {
                r#type: prometheus::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "up".into(),
            }],
            hints: Some(prometheus::ReadHints {
                step_ms: 15_000,
                func: "rate".into(),
                start_ms: 1000,
                end_ms: 2000,
                grouping: vec!["job".into()],
                by: true,
                range_ms: 300_000,
            }),
        }],
        accepted_response_types: vec![
            ResponseType::StreamedXorChunks as i32,
            ResponseType::Samples as i32,
        ],
    };
    let expected = cat(&[
        &[0x0a, 0x32],             // 1 queries[0], 50 bytes
        &[0x08, 0xe8, 0x07],       // start_timestamp_ms = 1000
        &[0x10, 0xd0, 0x0f],       // end_timestamp_ms = 2000
        &[0x1a, 0x0e, 0x12, 0x08], // matchers[0] {EQ omitted, __name__, up}
        b"__name__",
        &[0x1a, 0x02],
        b"up",
        &[0x22, 0x1a],       // hints, 26 bytes
        &[0x08, 0x98, 0x75], // step_ms = 15000
        &[0x12, 0x04],       // func
        b"rate",
        &[0x18, 0xe8, 0x07], // start_ms = 1000
        &[0x20, 0xd0, 0x0f], // end_ms = 2000
        &[0x2a, 0x03],       // grouping[0]
        b"job",
        &[0x30, 0x01],             // by = true
        &[0x38, 0xe0, 0xa7, 0x12], // range_ms = 300000
        // 2 accepted_response_types, packed [STREAMED_XOR_CHUNKS = 1, SAMPLES = 0]
        &[0x12, 0x02, 0x01, 0x00],
    ]);
    check(&msg, &expected);
}

#[test]
fn remote_read_response_samples() {
    let msg = prometheus::ReadResponse {
        results: vec![prometheus::QueryResult {
            timeseries: vec![prometheus::TimeSeries {
                labels: vec![prom_label("__name__", "up")],
                samples: vec![prometheus::Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
                ..Default::default()
            }],
        }],
    };
    let expected = cat(&[
        &[0x0a, 0x20],             // 1 results[0], 32 bytes
        &[0x0a, 0x1e],             // timeseries[0], 30 bytes
        &[0x0a, 0x0e, 0x0a, 0x08], // labels[0]
        b"__name__",
        &[0x12, 0x02],
        b"up",
        &[
            0x12, 0x0c, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0xe8, 0x07,
        ], // samples[0] {1.0, 1000}
    ]);
    check(&msg, &expected);
}

#[test]
fn chunked_read_response() {
    let msg = prometheus::ChunkedReadResponse {
        chunked_series: vec![prometheus::ChunkedSeries {
            labels: vec![prom_label("__name__", "up")],
            chunks: vec![prometheus::Chunk {
                min_time_ms: 1000,
                max_time_ms: 1000,
                r#type: prometheus::chunk::Encoding::Xor as i32,
                data: XOR_CHUNK.to_vec().into(),
            }],
        }],
        query_index: 1,
    };
    let expected = cat(&[
        &[0x0a, 0x28],             // 1 chunked_series[0], 40 bytes
        &[0x0a, 0x0e, 0x0a, 0x08], // labels[0]
        b"__name__",
        &[0x12, 0x02],
        b"up",
        &[0x12, 0x16],       // chunks[0], 22 bytes
        &[0x08, 0xe8, 0x07], // min_time_ms = 1000
        &[0x10, 0xe8, 0x07], // max_time_ms = 1000
        &[0x18, 0x01],       // type = XOR = 1 (written: not the default here, unlike thanos.Chunk)
        &[0x22, 0x0c],       // data (4), 12 bytes
        XOR_CHUNK,
        &[0x10, 0x01], // 2 query_index = 1
    ]);
    check(&msg, &expected);
}

#[test]
fn prometheus_copy_is_wire_identical_to_prometheus() {
    // Thanos' vendored package differs from Prometheus' only in its name (and
    // in using thanos.Label, itself identical to prometheus.Label).
    let theirs = prometheus::ChunkedSeries {
        labels: vec![prom_label("a", "1")],
        chunks: vec![prometheus::Chunk {
            min_time_ms: 5,
            max_time_ms: 6,
            r#type: prometheus::chunk::Encoding::Histogram as i32,
            data: vec![1, 2, 3].into(),
        }],
    };
    let copy = prometheus_copy::ChunkedSeries::decode(theirs.encode_to_vec().as_slice()).unwrap();
    assert_eq!(copy.labels, vec![label("a", "1")]);
    assert_eq!(
        copy.chunks[0].r#type,
        prometheus_copy::chunk::Encoding::Histogram as i32
    );
    assert_eq!(copy.encode_to_vec(), theirs.encode_to_vec());
}

#[test]
fn type_names_match_go() {
    assert_eq!(thanos::SeriesRequest::full_name(), "thanos.SeriesRequest");
    assert_eq!(info::InfoResponse::full_name(), "thanos.info.InfoResponse");
    assert_eq!(
        hintspb::SeriesRequestHints::type_url(),
        "type.googleapis.com/hintspb.SeriesRequestHints"
    );
    assert_eq!(
        prometheus::WriteRequest::full_name(),
        "prometheus.WriteRequest"
    );
    assert_eq!(
        prometheus_copy::WriteRequest::full_name(),
        "prometheus_copy.WriteRequest"
    );
}

#[test]
fn unknown_fields_are_skipped() {
    // A newer peer's field 99 (varint) and field 100 (bytes) before known ones.
    let bytes = cat(&[
        &[0x98, 0x06, 0x07],             // field 99, varint 7
        &[0xa2, 0x06, 0x02, 0x01, 0x02], // field 100, 2 bytes
        &[0x0a, 0x03],
        b"job",
    ]);
    let req = thanos::LabelValuesRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(req.label, "job");
}

#[test]
fn metadata_api_messages() {
    check(
        &thanos::MetricMetadataRequest {
            metric: "up".into(),
            limit: 5,
            partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        },
        &cat(&[
            &[0x0a, 0x02, b'u', b'p'], // 1 metric
            &[0x10, 0x05],             // 2 limit
            &[0x18, 0x01],             // 3 partial_response_strategy ABORT
        ]),
    );
    let mut metadata = std::collections::HashMap::new();
    metadata.insert(
        "up".to_string(),
        thanos::MetricMetadataEntry {
            metas: vec![thanos::Meta {
                r#type: "gauge".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        },
    );
    check(
        &thanos::MetricMetadataResponse {
            result: Some(thanos::metric_metadata_response::Result::Metadata(
                thanos::MetricMetadata { metadata },
            )),
        },
        &cat(&[
            &[0x0a, 0x14],                               // 1 metadata (oneof), 20 bytes
            &[0x0a, 0x12],                               //   1 map entry, 18 bytes
            &[0x0a, 0x02, b'u', b'p'],                   // key
            &[0x12, 0x0c],                               //     value: MetricMetadataEntry, 12 bytes
            &[0x12, 0x0a], //       2 metas: Meta, 10 bytes (field 1 unused)
            &[0x0a, 0x05, b'g', b'a', b'u', b'g', b'e'], // 1 type
            &[0x12, 0x01, b'h'], //  2 help; 3 unit empty, omitted
        ]),
    );
    check(
        &thanos::MetricMetadataResponse {
            result: Some(thanos::metric_metadata_response::Result::Warning(
                "w".into(),
            )),
        },
        &[0x12, 0x01, b'w'], // 2 warning
    );
    check(
        &info::InfoResponse {
            metric_metadata: Some(info::MetricMetadataInfo {}),
            ..Default::default()
        },
        &[0x2a, 0x00], // 5 metric_metadata, empty message: advertised
    );
}
