//! A PromQL engine with Prometheus 3.x semantics for float samples and
//! native histograms.
//!
//! # Main types
//!
//! - [`Engine`] evaluates queries: [`Engine::instant`] at one time,
//!   [`Engine::range`] over `[start, end]` every `step`. It is configured by
//!   [`EngineOptions`] (sample limit, timeout, lookback, experimental
//!   functions, delayed `__name__` removal, query size guards).
//! - [`Queryable`] is the storage the engine reads through; it does no IO
//!   itself. [`MemStorage`] is an in-memory implementation for tests and the
//!   promqltest harness.
//! - Results are [`QueryResult`]s holding a [`Value`] (scalar, string,
//!   instant vector or matrix; samples and series carry floats or
//!   [`FloatHistogram`]s) plus warnings and infos; failures are
//!   [`QueryError`]s that map onto the Prometheus API error types.
//! - [`parse`] and [`format_query`] expose the guarded parser
//!   (promql-parser 0.11.1 behind length and nesting-depth limits, plus
//!   Prometheus' histogram trim operators `</` and `>/`, which it lacks).
//! - [`FloatHistogram`] (module [`histogram`]) is a native histogram sample.
//!
//! # Evaluation model
//!
//! Queries are parsed, converted into the engine's own tree (`ast`), and
//! preprocessed like Prometheus does (step-invariant parts, `@ start()`).
//! Storage is then asked once per selector for everything that selector can
//! need; evaluation itself is pure computation over those samples. Every
//! expression is evaluated over all steps at once, as a matrix with one
//! point per step, so instant queries are range queries with a single step.
//! See the `engine` module for details, and `functions`, `aggr` and `binop`
//! for the operators.
//!
//! # Semantics implemented
//!
//! Left-open lookback and range windows (3.x), staleness markers,
//! `offset` (also negative), `@` with `start()`/`end()`, subqueries aligned
//! to absolute multiples of their step, every binary operator with vector
//! matching, all aggregations, the float functions of Prometheus 3.x
//! (experimental ones behind a flag), classic-histogram `histogram_quantile`
//! and `histogram_fraction`, delayed `__name__` removal, Prometheus' sample
//! counting for `max_samples`, and annotations with source positions.
//! Native histograms ([`FloatHistogram`]) flow through selectors, the
//! histogram functions, rate-like functions, `*_over_time`, aggregations and
//! binary operators as in Prometheus 3.x (see the `histogram` module).

mod aggr;
mod annotations;
mod ast;
mod binop;
mod durexpr;
pub mod engine;
mod functions;
pub mod histogram;
mod info;
mod lex;
pub mod parser;
mod partition;
pub mod promqltest;
mod quantile;
pub mod storage;
mod util;
pub mod value;

pub use engine::{Engine, EngineOptions, QueryError, QueryResult};
pub use histogram::FloatHistogram;
pub use parser::{format_query, parse};
pub use partition::query_reach;
pub use storage::{
    MemStorage, PartitionedQuery, PartitionedResult, Queryable, SelectHints, SelectRequest,
    SelectResult, StorageError, StorageSeries,
};
pub use value::{Sample, Series, Value};
