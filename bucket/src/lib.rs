//! Object storage for Strata, compatible with Thanos' buckets.
//!
//! This is the only crate of the workspace that links `object_store`
//! (ARCHITECTURE.md): everything that reads or writes a bucket goes through
//! it, so the sidecar, the store gateway, the compactor and the tools agree
//! on one layout, one config format and one set of error messages.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | `objstore.yml` (`type: S3 / GCS / AZURE / FILESYSTEM`, `config`, `prefix`) with Thanos' keys, mapped onto an `object_store` client with retries and timeouts |
//! | [`bucket`] | [`Bucket`]: upload (multipart above `part_size`), get, range get, exists, delete, sorted listings; errors naming the object and the operation |
//! | [`meta`] | Thanos' `meta.json`: tsdb's `BlockMeta` plus the `thanos` section, byte-identical to Thanos |
//! | [`markers`] | `deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json` |
//! | [`block`] | block upload (meta.json last), download, markers, delete (meta.json first), listing |
//! | [`fetcher`] | [`MetaFetcher`]: the bucket's blocks with Thanos' partial-upload, consistency-delay and deletion-mark rules, cached |
//!
//! The API is async (tokio). Local file work in uploads and downloads is
//! small (directory walks, one meta.json), so it runs inline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_bucket::{block, ObjstoreConfig, MetaFetcher, FetcherOptions, ThanosMeta};
//!
//! let bucket = ObjstoreConfig::from_file("objstore.yml".as_ref())?.build()?;
//! let thanos = ThanosMeta {
//!     labels: [("cluster".to_string(), "eu1".to_string())].into(),
//!     source: strata_bucket::meta::source::SIDECAR.into(),
//!     ..Default::default()
//! };
//! block::upload_block(&bucket, "data/01H8XGJWBWBA9G4WDMV3KTQNBV".as_ref(), thanos).await?;
//! let view = MetaFetcher::new(bucket, FetcherOptions::default())?.fetch().await?;
//! println!("{} blocks, {} partial uploads", view.metas.len(), view.partial.len());
//! # Ok(()) }
//! ```

pub mod block;
pub mod bucket;
pub mod config;
pub mod fetcher;
mod gojson;
pub mod markers;
pub mod meta;

pub use bucket::{Bucket, Error, ErrorKind, ObjectInfo, Op, Result, UploadConfig};
pub use config::{ConfigError, ObjstoreConfig, Provider};
pub use fetcher::{FetchResult, FetcherOptions, MetaFetcher};
pub use markers::{DeletionMark, NoCompactMark, NoDownsampleMark};
pub use meta::{Meta, MetaError, ThanosMeta};
