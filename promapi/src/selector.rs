//! Series selectors of `match[]` parameters.
//!
//! Prometheus parses each `match[]` value with a grammar that accepts only a
//! series selector: a metric name and/or `{…}` label matchers, without
//! `offset` or `@`. We reuse the PromQL parser and then insist on that shape.
//! Each selector must also hold a matcher that does not match the empty
//! string, or it would select every series.

use promql_parser::label::{MatchOp, Matcher as ParsedMatcher};
use promql_parser::parser::{Expr, VectorSelector};
use strata_promql::{EngineOptions, QueryError};
use strata_tsdb::labels::{MatchType, Matcher, METRIC_NAME};

/// Prometheus' text for a selector that matches the empty string everywhere.
pub const EMPTY_MATCHER_ERROR: &str = "match[] must contain at least one non-empty matcher";

/// Parses one series selector into its matcher sets. Usually one set; the
/// parser's `{a="1" or b="2"}` extension yields one set per alternative,
/// which callers union like separate `match[]` values.
pub fn parse_series_selector(
    input: &str,
    opts: &EngineOptions,
) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = match strata_promql::parse(input, opts) {
        Ok(e) => e,
        Err(e) => {
            let msg = query_error_message(e);
            // The PromQL parser itself rejects `{job=~".*"}`; Prometheus'
            // selector parser does not, and the API reports it with its own
            // text, so translate.
            if msg.contains("at least one non-empty matcher") {
                return Err(EMPTY_MATCHER_ERROR.to_string());
            }
            return Err(msg);
        }
    };
    let vs = match expr {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => vs,
        _ => {
            return Err(format!(
                "parse error: {input:?} is not a series selector: expected a metric name and/or label matchers in braces, e.g. up{{job=\"a\"}}"
            ))
        }
    };
    selector_matcher_sets(&vs)
}

/// Parses all `match[]` values and checks each set has a non-empty matcher.
pub fn parse_match_params<'a>(
    values: impl IntoIterator<Item = &'a str>,
    opts: &EngineOptions,
) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::new();
    for v in values {
        sets.extend(parse_series_selector(v, opts)?);
    }
    for set in &sets {
        if set.iter().all(|m| m.matches("")) {
            return Err(EMPTY_MATCHER_ERROR.to_string());
        }
    }
    Ok(sets)
}

fn selector_matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, String> {
    // The parser keeps a bare metric name apart from the braces' matchers.
    let mut base = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    let convert = |ms: &[ParsedMatcher], base: &[Matcher]| -> Result<Vec<Matcher>, String> {
        let mut set = base.to_vec();
        for m in ms {
            set.push(convert_matcher(m)?);
        }
        Ok(set)
    };
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![convert(&vs.matchers.matchers, &base)?]);
    }
    let mut sets = Vec::new();
    for alt in &vs.matchers.or_matchers {
        let mut set = convert(alt, &base)?;
        // Matchers outside any `or` group apply to every alternative.
        for m in &vs.matchers.matchers {
            set.push(convert_matcher(m)?);
        }
        sets.push(set);
    }
    Ok(sets)
}

/// Converts a parser matcher to a storage matcher.
pub fn convert_matcher(m: &ParsedMatcher) -> Result<Matcher, String> {
    let kind = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::Re(_) => MatchType::Regex,
        MatchOp::NotRe(_) => MatchType::NotRegex,
    };
    Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
}

/// The message inside an engine error, without any prefix.
pub(crate) fn query_error_message(e: QueryError) -> String {
    match e {
        QueryError::BadData(m)
        | QueryError::Execution(m)
        | QueryError::Timeout(m)
        | QueryError::Canceled(m)
        | QueryError::Storage(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(s: &str) -> Result<Vec<Vec<String>>, String> {
        parse_match_params([s], &EngineOptions::default()).map(|v| {
            v.into_iter()
                .map(|set| set.iter().map(|m| format!("{m:?}")).collect())
                .collect()
        })
    }

    #[test]
    fn selectors() {
        assert_eq!(sets("up").unwrap(), [["__name__=\"up\""]]);
        assert_eq!(
            sets("up{job=~\"a|b\",x!=\"\"}").unwrap(),
            [["__name__=\"up\"", "job=~\"a|b\"", "x!=\"\""]]
        );
        assert_eq!(sets("{__name__=\"up\"}").unwrap(), [["__name__=\"up\""]]);
        assert_eq!(
            sets("up{a=\"1\" or b=\"2\"}").unwrap(),
            [
                ["__name__=\"up\"", "a=\"1\""],
                ["__name__=\"up\"", "b=\"2\""]
            ]
        );
        assert_eq!(sets("{job=~\".*\"}").unwrap_err(), EMPTY_MATCHER_ERROR);
        assert_eq!(sets("{job=\"\"}").unwrap_err(), EMPTY_MATCHER_ERROR);
        assert!(sets("rate(x[5m])")
            .unwrap_err()
            .contains("not a series selector"));
        assert!(sets("x offset 5m")
            .unwrap_err()
            .contains("not a series selector"));
        assert!(sets("x[5m]").is_err());
        assert!(sets("up{").is_err());
        assert!(sets("").is_err());
    }
}
