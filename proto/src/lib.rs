//! Wire types and gRPC services that Strata shares with Thanos and Prometheus.
//!
//! # What is here
//!
//! | Rust module | proto package | our file (`proto/proto/…`) | upstream file |
//! |---|---|---|---|
//! | [`thanos`] | `thanos` | `store/labelpb/types.proto`, `store/storepb/{types,rpc}.proto`, `metadata/metadatapb/rpc.proto`, `api/query/querypb/query.proto` | thanos `pkg/store/labelpb/types.proto`, `pkg/store/storepb/{types,rpc}.proto`, `pkg/metadata/metadatapb/rpc.proto`, `pkg/api/query/querypb/query.proto` |
//! | [`thanos::info`] | `thanos.info` | `info/infopb/rpc.proto` | thanos `pkg/info/infopb/rpc.proto` |
//! | [`hintspb`] | `hintspb` | `store/hintspb/hints.proto` | thanos `pkg/store/hintspb/hints.proto` |
//! | [`prometheus_copy`] | `prometheus_copy` | `store/storepb/prompb/{types,remote}.proto` | thanos `pkg/store/storepb/prompb/{types,remote}.proto` |
//! | [`prometheus`] | `prometheus` | `prompb/{types,remote}.proto` | prometheus `prompb/{types,remote}.proto` |
//! | [`grpc`] | — | hand-written | server/client options as Thanos sets them |
//! | [`wire`] | — | hand-written | a protobuf wire reader for in-place decoders |
//! | [`storeapi`] | — | hand-written | matchers, labels and frames for StoreAPI servers over a TSDB |
//!
//! Services, with their gRPC paths:
//! - [`thanos::store_server::Store`] / [`thanos::store_client::StoreClient`]:
//!   `/thanos.Store/Series` (server streaming), `/thanos.Store/LabelNames`,
//!   `/thanos.Store/LabelValues`.
//! - [`thanos::writeable_store_server::WriteableStore`] /
//!   [`thanos::writeable_store_client::WriteableStoreClient`]:
//!   `/thanos.WriteableStore/RemoteWrite` (between receivers; its
//!   [`thanos::WriteRequest`] carries [`prometheus_copy::TimeSeries`]).
//! - [`thanos::metadata_server::Metadata`] / [`thanos::metadata_client::MetadataClient`]:
//!   `/thanos.Metadata/MetricMetadata` (server streaming): metric metadata
//!   as Prometheus' `/api/v1/metadata` has it.
//! - [`thanos::query_server::Query`] / [`thanos::query_client::QueryClient`]:
//!   `/thanos.Query/Query` and `/thanos.Query/QueryRange` (server
//!   streaming): a whole PromQL query evaluated by a remote engine (Thanos'
//!   distributed mode; strata's querier hands store-local queries to
//!   `strata tsdb` this way).
//! - [`thanos::info::info_server::Info`] / [`thanos::info::info_client::InfoClient`]:
//!   `/thanos.info.Info/Info`.
//! - The standard `grpc.health.v1.Health` service, from `tonic-health`: see
//!   [`grpc::health_service`].
//!
//! [`prometheus`] is what Prometheus itself speaks over HTTP: remote write 1.0
//! ([`prometheus::WriteRequest`]) and remote read ([`prometheus::ReadRequest`],
//! [`prometheus::ReadResponse`], [`prometheus::ChunkedReadResponse`]).
//! [`prometheus_copy`] is Thanos' vendored copy of the same messages under
//! another package name, with `thanos.Label` for labels; the StoreAPI uses it
//! only inside `thanos.WriteRequest`. The two are wire-identical except that
//! [`prometheus::chunk::Encoding`] has the newer Prometheus encodings (`XOR2`,
//! `HISTOGRAM_ST`, `FLOAT_HISTOGRAM_ST`).
//!
//! Every message implements [`prost::Name`], so hints travel in
//! `google.protobuf.Any` ([`prost_types::Any`]) under the type URL Go uses:
//!
//! ```
//! use strata_proto::{hintspb, thanos};
//! use prost_types::Any;
//!
//! let hints = hintspb::SeriesRequestHints {
//!     block_matchers: vec![thanos::LabelMatcher {
//!         r#type: thanos::label_matcher::Type::Eq as i32,
//!         name: "__block_id".into(),
//!         value: "01J0000000000000000000000".into(),
//!     }],
//!     enable_query_stats: true,
//! };
//! let any = Any::from_msg(&hints).unwrap();
//! assert_eq!(any.type_url, "type.googleapis.com/hintspb.SeriesRequestHints");
//! assert_eq!(any.to_msg::<hintspb::SeriesRequestHints>().unwrap(), hints);
//! ```
//!
//! `bytes` fields (chunk data, the symbol table) are [`prost::bytes::Bytes`]: decoding
//! from a `Bytes` buffer shares it instead of copying each chunk.
//!
//! # Compatibility rules for the `.proto` files
//!
//! The files under `proto/proto/` are our own, written to match upstream on the
//! wire: the same packages, message names, field numbers, field types, enum
//! values and service/method names. Upstream's `gogoproto` options are left out
//! because they change only Go code. When editing them:
//!
//! - Never renumber a field, change its type, or reuse a number or enum value.
//!   Numbers upstream removed stay `reserved` (`StoreInfo` 4, `WriteRequest` 2).
//! - Add a field only when upstream has added it, with upstream's number. Go
//!   peers silently drop fields they do not know, and so does prost.
//! - Package and service names are part of the wire: they form the gRPC paths
//!   (`/thanos.Store/Series`) and the `Any` type URLs (`hintspb.*`).
//! - Message names matter only in `Any` type URLs, field names not at all; the
//!   odd upstream spellings (`ComponentType`, `timeseriesTenantData`) are kept
//!   anyway, and become `component_type` / `timeseries_tenant_data` in Rust.
//! - gogo's `nullable=false` on a singular message field makes Go always write
//!   the field, even when empty; prost makes it an `Option` that it writes only
//!   when `Some`. Both decode either form. On the Rust side treat `None` as the
//!   empty message, and set `Some(..)` to produce Go's exact bytes. The fields:
//!   [`thanos::info::TsdbInfo::labels`],
//!   [`hintspb::QueryStats::get_all_duration`], [`hintspb::QueryStats::merge_duration`].
//! - The golden tests in `tests/it/wire.rs` pin the bytes of representative
//!   messages; a change that moves any of them breaks compatibility.
//!
//! # The XOR encoding is off by one between the StoreAPI and remote read
//!
//! [`thanos::chunk::Encoding`] is `XOR = 0, HISTOGRAM = 1, FLOAT_HISTOGRAM = 2`,
//! while [`prometheus::chunk::Encoding`] (remote read) is `UNKNOWN = 0, XOR = 1,
//! HISTOGRAM = 2, FLOAT_HISTOGRAM = 3, …`, the Prometheus TSDB's own numbering.
//! A sidecar that forwards remote-read chunks onto the StoreAPI must subtract
//! one (Thanos does `storepb.Chunk_Encoding(chk.Type - 1)`). Convert with
//! [`thanos::chunk::Encoding::from_remote_read`] and
//! [`thanos::chunk::Encoding::to_remote_read`], never by casting.
//!
//! # Code generation: committed, checked by a test
//!
//! The Rust code under `src/gen/` is generated by `prost-build` and
//! `tonic-prost-build` from a descriptor set that `protox` (a protobuf compiler
//! written in Rust) produces, so no `protoc` is needed anywhere. The output is
//! committed rather than produced by a `build.rs`, because:
//!
//! - every build, `cargo check` and `clippy` of every crate that depends on this
//!   one would otherwise first compile protox, prost-build, tonic-build,
//!   prettyplease and their dependencies and run them, on 2-core machines;
//! - the generated API is visible in review diffs and to grep and editors.
//!
//! The cost is that the generated code can fall out of date; the `codegen`
//! test (`tests/codegen.rs`, behind the `codegen` feature so ordinary builds
//! compile no generator) regenerates into a temporary directory and fails on
//! any difference. `scripts/test.sh` runs it. After changing a `.proto` file:
//!
//! ```text
//! scripts/proto-codegen.sh --bless   # rewrite src/gen/
//! scripts/proto-codegen.sh           # check only
//! ```
//!
//! The generator links this library, so the library must still compile with
//! the old `src/gen/` when you bless.

#![warn(missing_docs)]

/// Generated code: no docs on every item, and clippy's opinion does not apply.
macro_rules! generated {
    ($(#[$meta:meta])* $vis:vis mod $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
        $vis mod $name { $($body)* }
    };
}

generated! {
    /// Package `thanos`: the StoreAPI (`Store`, `WriteableStore`) and its
    /// messages, labels included (Go packages storepb and labelpb).
    pub mod thanos {
        include!("gen/thanos.rs");

        generated! {
            /// Package `thanos.info`: the Info API that every Thanos component serves.
            pub mod info {
                include!("gen/thanos.info.rs");
            }
        }
    }
}

generated! {
    /// Package `hintspb`: store hints carried in `google.protobuf.Any`.
    pub mod hintspb {
        include!("gen/hintspb.rs");
    }
}

generated! {
    /// Package `prometheus_copy`: Thanos' vendored copy of the Prometheus remote
    /// protocol, labels as `thanos.Label`. Used by [`thanos::WriteRequest`].
    pub mod prometheus_copy {
        include!("gen/prometheus_copy.rs");
    }
}

generated! {
    /// Package `prometheus`: Prometheus remote write 1.0 and remote read, as
    /// Prometheus sends them (snappy-compressed protobuf over HTTP).
    pub mod prometheus {
        include!("gen/prometheus.rs");
    }
}

pub mod grpc;
pub mod storeapi;
pub mod wire;

impl thanos::chunk::Encoding {
    /// The StoreAPI encoding of a remote-read chunk encoding: one less.
    ///
    /// `None` for `UNKNOWN` and for encodings the StoreAPI does not have.
    pub fn from_remote_read(encoding: prometheus::chunk::Encoding) -> Option<Self> {
        use prometheus::chunk::Encoding as P;
        match encoding {
            P::Xor => Some(Self::Xor),
            P::Histogram => Some(Self::Histogram),
            P::FloatHistogram => Some(Self::FloatHistogram),
            P::Unknown | P::Xor2 | P::HistogramSt | P::FloatHistogramSt => None,
        }
    }

    /// The remote-read encoding of a StoreAPI chunk encoding: one more.
    pub fn to_remote_read(self) -> prometheus::chunk::Encoding {
        use prometheus::chunk::Encoding as P;
        match self {
            Self::Xor => P::Xor,
            Self::Histogram => P::Histogram,
            Self::FloatHistogram => P::FloatHistogram,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{prometheus, thanos};

    #[test]
    fn chunk_encodings_are_off_by_one() {
        use prometheus::chunk::Encoding as P;
        use thanos::chunk::Encoding as T;
        for (t, p) in [
            (T::Xor, P::Xor),
            (T::Histogram, P::Histogram),
            (T::FloatHistogram, P::FloatHistogram),
        ] {
            assert_eq!(t as i32 + 1, p as i32);
            assert_eq!(t.to_remote_read(), p);
            assert_eq!(T::from_remote_read(p), Some(t));
        }
        assert_eq!(T::Xor as i32, 0);
        assert_eq!(P::Xor as i32, 1);
        for p in [P::Unknown, P::Xor2, P::HistogramSt, P::FloatHistogramSt] {
            assert_eq!(T::from_remote_read(p), None);
        }
    }
}
