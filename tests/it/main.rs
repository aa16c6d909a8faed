//! End-to-end tests of the `strata` binary: ONE test binary whose modules
//! start real processes (`strata tsdb`, `strata sidecar`, `strata query`,
//! Prometheus 2.42, promtool, s3s-fs) on free ports. The shared pieces are
//! in [`harness`] (processes, readiness, HTTP client, result comparator)
//! and [`dataset`] (generated Kubernetes-style data and the query set).
//!
//! | module | what it checks |
//! |---|---|
//! | `tsdb_server` | remote-written samples survive `kill -9`, also a kill in the middle of 3 concurrent writers (every 204-acknowledged sample is back after the restart) |
//! | `reference` | `strata tsdb` answers the query set like Prometheus 2.42 |
//! | `federation` | two clusters behind `strata query` answer like one Prometheus; series/labels APIs; a cluster down (partial response) and back |
//! | `node_exporter` | a real node-exporter scraped by strata and by Prometheus 2.42 remote-writing into strata: the same series per metric, the same stable gauge values |
//! | `ha` | an HA pair deduplicated by `--query.replica-label` |
//! | `grafana` | Grafana's recorded request sequence against the querier |
//! | `promtool` | `promtool query …` against the querier vs Prometheus |
//! | `bucket` | blocks shipped to S3 (s3s-fs) with Thanos meta |
//! | `demo` | `strata demo` started, interrupted and restarted on the same data |

mod dataset;
mod harness;

mod bucket;
mod demo;
mod federation;
mod grafana;
mod ha;
mod node_exporter;
mod promtool;
mod reference;
mod tsdb_server;
