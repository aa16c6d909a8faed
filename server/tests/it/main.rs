//! Integration tests of `strata tsdb`: a real server on 127.0.0.1 with a
//! temporary data directory, driven over HTTP; interop with the real
//! Prometheus 2.42 and promtool when installed.

mod common;
mod histograms;
mod interop;
mod metadata;
mod remote;
mod storeapi;
mod web;
mod webconfig;
