//! Guarded parsing.
//!
//! promql-parser builds its AST recursively and has no depth limit, so a long
//! enough query (tens of thousands of nested parentheses or chained
//! operators) overflows the stack and aborts the whole process. Query strings
//! are untrusted, so before the text reaches the parser we bound its length
//! and an upper estimate of its nesting depth (see [`crate::lex::shape`]) and
//! answer `bad_data` when either is exceeded. The parse call itself also runs
//! under `catch_unwind` so a panic inside the parser becomes an error too.

use std::panic::{catch_unwind, AssertUnwindSafe};

use promql_parser::parser::Expr;

use crate::ast;
use crate::engine::{EngineOptions, QueryError};
use crate::lex;

/// Parses `query` after checking it against the length and depth limits in
/// `opts`. All failures are [`QueryError::BadData`].
pub fn parse(query: &str, opts: &EngineOptions) -> Result<Expr, QueryError> {
    parse_with_trims(query, opts).map(|(e, _)| e)
}

/// A query with its trim operators rewritten for promql-parser, and their
/// offsets (see [`crate::lex::rewrite_trim_ops`]).
pub(crate) type TrimRewrite = (String, Vec<usize>);

/// [`parse`], also accepting Prometheus' trim operators `>/` and `</`: they
/// are handed to promql-parser as `>=`/`<=` (see
/// [`crate::lex::rewrite_trim_ops`]); the rewritten text and the offsets of
/// the trim operators are returned for the AST converter.
pub(crate) fn parse_with_trims(
    query: &str,
    opts: &EngineOptions,
) -> Result<(Expr, Option<TrimRewrite>), QueryError> {
    if query.len() > opts.max_query_length {
        return Err(QueryError::BadData(format!(
            "query is too long: {} bytes, the limit is {} bytes",
            query.len(),
            opts.max_query_length
        )));
    }
    let shape = lex::shape(query);
    let estimate = shape.max_nesting.saturating_add(shape.operators);
    if estimate > opts.max_query_depth {
        return Err(too_deep(opts));
    }
    if query.trim().is_empty() {
        return Err(QueryError::BadData(
            "parse error: no expression found in input".into(),
        ));
    }
    let trims = lex::rewrite_trim_ops(query);
    let text = trims.as_ref().map_or(query, |t| t.0.as_str());
    let expr = cached_parse(text)?;
    // The estimate above is an upper bound; this is the real depth, in case
    // the parser built something deeper than the text suggested.
    if ast::depth(&expr) > opts.max_query_depth {
        return Err(too_deep(opts));
    }
    Ok((expr, trims))
}

/// Successful parses by query text (128 texts of up to 4 KiB, none with a
/// counted repetition in a regex: see [`cached_parse`]).
///
/// Why: an HTTP query is parsed twice (the API checks it before handing it
/// to the engine, which parses again), and dashboards send the same texts
/// at every refresh. promql-parser compiles every regex matcher while
/// parsing, eagerly, so a parse of a query with `=~` costs tens of
/// microseconds: a seventh of the querier's CPU for a small federated
/// query, measured with `perf` (see `strata_tsdb::labels`' regex cache).
static PARSE_CACHE: std::sync::LazyLock<strata_tsdb::memo::Memo<Expr>> =
    std::sync::LazyLock::new(|| strata_tsdb::memo::Memo::new(128, 4096));

/// promql-parser's `parse` through [`PARSE_CACHE`], under `catch_unwind` so
/// a parser panic is an error. A text with what may be a counted repetition
/// (`{` then a digit or `,`, which no selector starts with) is parsed every
/// time and never kept: its compiled regexes can take megabytes.
fn cached_parse(text: &str) -> Result<Expr, QueryError> {
    let parse =
        |text: &str| match catch_unwind(AssertUnwindSafe(|| promql_parser::parser::parse(text))) {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(msg)) => Err(QueryError::BadData(format!("parse error: {msg}"))),
            Err(_) => Err(QueryError::BadData("parse error: invalid query".into())),
        };
    let counted = text
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'{' && (w[1].is_ascii_digit() || w[1] == b','));
    if counted {
        return parse(text);
    }
    PARSE_CACHE.get_or_try(text, parse)
}

fn too_deep(opts: &EngineOptions) -> QueryError {
    QueryError::BadData(format!(
        "query is too deeply nested: the limit is {} levels of nesting and operators",
        opts.max_query_depth
    ))
}

/// Parses `query` (guarded like [`parse`]) and prints it the way
/// `/api/v1/format_query` does: one expression, split over lines and indented
/// when it is longer than 100 characters.
pub fn format_query(query: &str, opts: &EngineOptions) -> Result<String, QueryError> {
    let (expr, trims) = parse_with_trims(query, opts)?;
    let out = catch_unwind(AssertUnwindSafe(|| expr.prettify()))
        .map_err(|_| QueryError::BadData("parse error: cannot format query".into()))?;
    // promql-parser printed the trim operators as `>=`/`<=`: put them back.
    Ok(match trims {
        Some((text, pos)) => lex::restore_trim_ops(&out, &lex::trim_ordinals(&text, &pos)),
        None => out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let o = EngineOptions::default();
        assert!(parse("sum by (job) (rate(foo[5m]))", &o).is_ok());
        assert_eq!(format_query("sum(foo)", &o).unwrap(), "sum(foo)");
        // Trim operators parse (promql-parser lacks them) and print back.
        assert!(parse("h >/ 1", &o).is_ok());
        assert_eq!(format_query("h </ 1 >= 2", &o).unwrap(), "h </ 1 >= 2");
    }

    #[test]
    fn rejects_deep_and_long_queries_before_parsing() {
        let o = EngineOptions::default();
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse(&deep, &o).unwrap_err();
        assert_eq!(e.error_type(), "bad_data");
        let chain = vec!["a"; 20_000].join(" + ");
        assert_eq!(parse(&chain, &o).unwrap_err().error_type(), "bad_data");
        let neg = format!("{}a", "-".repeat(60_000));
        assert_eq!(parse(&neg, &o).unwrap_err().error_type(), "bad_data");
        let long = "a".repeat(o.max_query_length + 1);
        assert!(parse(&long, &o)
            .unwrap_err()
            .to_string()
            .contains("too long"));
    }

    #[test]
    fn counted_repetitions_are_parsed_but_not_kept() {
        let o = EngineOptions::default();
        let counted = "up{job=~\"a{2,3}\"}";
        let plain = "up{job=~\"ab\"}";
        assert!(parse(counted, &o).is_ok());
        assert!(parse(plain, &o).is_ok());
        assert!(!PARSE_CACHE.contains(counted));
        assert!(PARSE_CACHE.contains(plain));
    }

    #[test]
    fn parse_errors_are_bad_data() {
        let o = EngineOptions::default();
        for q in ["", "sum(", "foo{", "1 +", "rate(foo)", "{}"] {
            assert_eq!(parse(q, &o).unwrap_err().error_type(), "bad_data", "{q}");
        }
    }
}
