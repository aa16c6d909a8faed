//! Scraping for `strata tsdb`: everything between a `prometheus.yml` and
//! samples in the storage engine.
//!
//! The pieces, in the order data flows through them:
//!
//! * [`config`] — the `prometheus.yml` subset: `global`, `scrape_configs`
//!   with static, file and Kubernetes service discovery,
//!   relabeling, auth, TLS and limits. Parsed and validated like Prometheus
//!   2.42, with line, column and field in every error; prints the effective
//!   config back ([`config::Config::to_yaml`]).
//! * [`discovery`] — target groups: static ones and [`discovery::FileDiscovery`]
//!   (JSON/YAML files, globs, polled).
//! * [`kubernetes`] — [`kubernetes::KubernetesDiscovery`]: list + watch of
//!   the Kubernetes API (pod, node, service, endpoints, endpointslice roles)
//!   on a small client of our own.
//! * [`relabel`] — every relabel action, Prometheus semantics (hashmod
//!   included, bit for bit).
//! * [`target`] — `populate_labels`: job defaults, target relabeling, address
//!   and instance, the scrape URL.
//! * [`scrape_loop`] — one target's loop: HTTP GET with Prometheus' headers
//!   and limits ([`http`]), parsing with `strata_tsdb::textparse`, sample
//!   relabeling, one appender per scrape, staleness markers, `up` and the
//!   `scrape_*` series.
//! * [`manager`] — [`ScrapeManager`]: runs the loops of a config, applies
//!   reloads by diffing jobs and targets, polls file_sd, and snapshots
//!   targets for `/api/v1/targets` ([`api`]).
//! * [`storage`] — the [`Appendable`] trait the loops write to, implemented
//!   for `strata_tsdb::db::Db`.
//!
//! It is not: an HTTP server (the `strata tsdb` server serves the API
//! structs from [`api`]), a general Kubernetes client (only the list and
//! watch calls discovery needs), or a protobuf/native-histogram scraper (text formats only, as the
//! storage engine has float samples only).

pub mod api;
pub mod config;
pub mod discovery;
pub mod http;
pub mod kubernetes;
pub mod manager;
pub mod relabel;
pub mod scrape_loop;
pub mod storage;
pub mod target;

pub use config::{Config, ConfigError, ScrapeConfig};
pub use manager::{ApplyError, ScrapeManager};
pub use relabel::{Action, RelabelConfig};
pub use scrape_loop::{
    is_stale_nan, stale_nan, LoopOptions, MetricMetadata, ScrapeLoop, ScrapeReport, TargetMetadata,
    STALE_NAN_BITS,
};
pub use storage::{AppendError, Appendable, ScrapeAppender};
pub use target::Target;
