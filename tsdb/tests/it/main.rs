//! Integration tests for `strata-tsdb`: one test binary (see ARCHITECTURE.md).
//!
//! The interop tests run the real Prometheus 2.42 `promtool` and `prometheus`
//! from Debian's `prometheus` package; `scripts/test.sh` installs it.

mod common;
mod compaction;
mod corrupt;
mod durability;
mod interop;
