//! Integration tests of `strata-demo`: the exporters over real HTTP, the
//! backfill read back by our block reader and by the real promtool, and
//! the example queries evaluated on the model's data. The end-to-end test
//! of `strata demo` as a process is the root package's `tests/demo.rs`.

mod backfill;
mod exporters;
mod queries;
