//! The `/api/v1` endpoints.
//!
//! Each handler validates parameters in Prometheus' order (so the first error
//! reported is the same one), then does its work on a blocking thread: query
//! evaluation, selector parsing and backend calls may all take long or block,
//! and the async workers must stay free to accept requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};
use strata_promql::{Engine, EngineOptions, QueryError, Value};

use crate::backend::{Endpoint, MetadataQuery, RequestContext};
use crate::error::ApiError;
use crate::format::{labels_array_json, query_data_json, string_array_json, to_go_json};
use crate::params::{
    format_system_time, now_ms, ns_to_duration, parse_duration_ns, parse_limit, parse_time, Params,
    MAX_TIME_MS, MIN_TIME_MS,
};
use crate::response::{respond, ApiResult, Success};
use crate::selector::{parse_match_params, query_error_message};
use crate::Api;

type ApiState = State<Arc<Api>>;

const TRUNCATED: &str = "results truncated due to limit";

pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/query", get(query).post(query))
        .route("/query_range", get(query_range).post(query_range))
        .route(
            "/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/format_query", get(format_query).post(format_query))
        .route("/parse_query", get(parse_query).post(parse_query))
        .route("/series", get(series).post(series))
        .route("/labels", get(labels).post(labels))
        .route("/label/{name}/values", get(label_values))
        .route("/metadata", get(metadata))
        .route("/targets", get(targets))
        .route("/rules", get(rules))
        .route("/alerts", get(alerts))
        .route("/status/buildinfo", get(buildinfo))
        .route("/status/config", get(config))
        .route("/status/flags", get(flags))
        .route("/status/runtimeinfo", get(runtimeinfo))
        .route("/status/tsdb", get(tsdb_status))
        .method_not_allowed_fallback(crate::method_not_allowed)
}

/// Reads the request's parameters: the URL query plus, for a POST/PUT/PATCH
/// with an urlencoded body, the body (which takes precedence, as in Go).
async fn read_params(api: &Api, req: Request) -> Result<(Params, HeaderMap), ApiError> {
    let (parts, body) = req.into_parts();
    let is_form = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
    let body = if is_form {
        let bytes = axum::body::to_bytes(body, api.opts.max_body_bytes)
            .await
            .map_err(|e| {
                // Go's MaxBytesReader wording for the common case.
                let why = if is_length_limit(&e) {
                    "http: request body too large".to_string()
                } else {
                    e.to_string()
                };
                ApiError::bad_data(format!("error parsing form values: {why}"))
            })?;
        Some(bytes)
    } else {
        drop::<Body>(body);
        None
    };
    let params = Params::from_parts(body.as_deref(), parts.uri.query());
    Ok((params, parts.headers))
}

/// Whether reading the body failed on the size limit (http-body's
/// `LengthLimitError`, wrapped by axum; matched by its text to avoid a direct
/// dependency on http-body-util).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("length limit exceeded") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Runs `f` on a blocking thread; a panic in it becomes an internal error
/// instead of taking the server down.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request handler failed: {e}")))?
}

/// `parseTimeParam`: a missing or empty value gives the default.
fn time_param(params: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match params.value(name) {
        "" => Ok(default),
        v => parse_time(v).map_err(|e| {
            ApiError::invalid_param(name, format!("invalid time value for '{name}': {e}"))
        }),
    }
}

fn limit_param(params: &Params) -> Result<usize, ApiError> {
    parse_limit(params.value("limit")).map_err(|e| ApiError::invalid_param("limit", e))
}

fn check_length(api: &Api, param: &str, value: &str) -> Result<(), String> {
    let max = api.opts.max_query_length;
    if max > 0 && value.len() > max {
        return Err(format!(
            "{param} is {} bytes long, more than the limit of {max} bytes",
            value.len()
        ));
    }
    Ok(())
}

/// `12345` → `12,345`, for the points limit message.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The engine's error as the API reports it. A `BadData` error is about the
/// query text, which Prometheus reports as an invalid `query` parameter.
fn query_api_error(e: QueryError) -> ApiError {
    match e {
        QueryError::BadData(m) => ApiError::invalid_param("query", m),
        QueryError::Execution(m) => ApiError::execution(m),
        QueryError::Timeout(m) => ApiError::timeout(m),
        QueryError::Canceled(m) => ApiError::new(crate::ErrorType::Canceled, m),
        // Prometheus' `returnAPIError`: select failures are `execution`.
        QueryError::Storage(m) => ApiError::execution(m),
    }
}

enum QueryKind {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// What `query` and `query_range` share after their own parameters.
struct QueryRequest {
    query: String,
    kind: QueryKind,
    /// From the `timeout` parameter, in nanoseconds.
    timeout_ns: Option<i64>,
    /// From `lookback_delta`, in nanoseconds (0 = the server default).
    lookback_ns: i64,
    limit: usize,
}

/// `timeout` and `lookback_delta`, parsed in Prometheus' order.
fn timeout_and_lookback(params: &Params) -> Result<(Option<i64>, i64), ApiError> {
    let timeout = match params.value("timeout") {
        "" => None,
        t => Some(parse_duration_ns(t).map_err(|e| ApiError::invalid_param("timeout", e))?),
    };
    let lookback = match params.value("lookback_delta") {
        "" => 0,
        l => parse_duration_ns(l).map_err(|e| {
            ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
        })?,
    };
    Ok((timeout, lookback))
}

async fn run_query(api: Arc<Api>, ctx: RequestContext, req: QueryRequest) -> ApiResult {
    check_length(&api, "query", &req.query).map_err(|e| ApiError::invalid_param("query", e))?;
    // Parse before queueing, as Prometheus does when it creates the query: a
    // bad query fails at once instead of waiting for a slot. The engine parses
    // again; that costs microseconds next to evaluation.
    {
        let query = req.query.clone();
        let opts = api.opts.engine.clone();
        let range = matches!(req.kind, QueryKind::Range { .. });
        blocking(move || check_query(&query, &opts, range)).await?;
    }

    let mut budget = api.opts.query_timeout;
    if let Some(t) = req.timeout_ns {
        budget = budget.min(ns_to_duration(t));
    }
    let deadline = deadline_after(budget);
    let tokio_deadline = tokio::time::Instant::from_std(deadline);

    // Queue rather than reject: wait for a slot, but not past the deadline.
    let permit =
        match tokio::time::timeout_at(tokio_deadline, api.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(ApiError::internal("query queue is closed")),
            Err(_) => return Err(ApiError::timeout("query timed out in query queue")),
        };

    let mut eopts: EngineOptions = api.opts.engine.clone();
    // Never hand the engine a zero timeout: it could read it as "none", and
    // the evaluation would then hold its slot unbounded after we answered.
    eopts.timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    if req.lookback_ns > 0 {
        eopts.lookback_delta = (req.lookback_ns / 1_000_000).max(1);
    }
    let backend = api.backend.clone();
    let ctx = ctx.with_deadline(Some(deadline));
    let query_text = req.query.clone();
    let task = tokio::task::spawn_blocking(move || -> ApiResult {
        // Held until evaluation really ends, even if the HTTP side has given
        // up, so the limit counts work actually running.
        let _permit = permit;
        let queryable = backend.queryable(&ctx)?;
        let engine = Engine::new(eopts);
        let res = match req.kind {
            QueryKind::Instant(t) => engine.instant(queryable.as_ref(), &req.query, t),
            QueryKind::Range { start, end, step } => {
                engine.range(queryable.as_ref(), &req.query, start, end, step)
            }
        }
        .map_err(query_api_error)?;

        let mut value = res.value;
        let mut warnings = res.warnings;
        if req.limit > 0 {
            let truncated = match &mut value {
                Value::Vector(v) if v.len() > req.limit => {
                    v.truncate(req.limit);
                    true
                }
                Value::Matrix(m) if m.len() > req.limit => {
                    m.truncate(req.limit);
                    true
                }
                _ => false,
            };
            if truncated {
                warnings.push(TRUNCATED.to_string());
            }
        }
        // Encoding a large matrix takes a while: do it here, off the async
        // workers.
        Ok(Success {
            data: Some(query_data_json(&value)),
            warnings,
            infos: res.infos,
        })
    });
    let started = Instant::now();
    let result = tokio::time::timeout_at(tokio_deadline, task).await;
    tracing::debug!(query = %query_text, elapsed = ?started.elapsed(), "query evaluated");
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError::internal(format!("query evaluation failed: {e}"))),
        Err(_) => Err(ApiError::timeout(
            "query timed out in expression evaluation",
        )),
    }
}

/// `now + budget`, saturating far in the future instead of overflowing when
/// the server is configured with an enormous timeout.
fn deadline_after(budget: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(budget)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Parses the query; a range query must also evaluate to a scalar or an
/// instant vector.
fn check_query(query: &str, opts: &EngineOptions, range: bool) -> Result<(), ApiError> {
    let expr = strata_promql::parse(query, opts).map_err(query_api_error)?;
    if !range {
        return Ok(());
    }
    let kind = match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => return Ok(()),
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    };
    Err(ApiError::invalid_param(
        "query",
        format!(
            "invalid expression type \"{kind}\" for range query, must be Scalar or instant Vector"
        ),
    ))
}

fn context(endpoint: Endpoint, params: Params, headers: HeaderMap) -> RequestContext {
    RequestContext::new(endpoint, params).with_headers(headers)
}

async fn query(State(api): ApiState, req: Request) -> Response {
    respond(query_impl(api, req).await)
}

async fn query_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, headers) = read_params(&api, req).await?;
    let limit = limit_param(&params)?;
    let t = time_param(&params, "time", now_ms())?;
    let (timeout_ns, lookback_ns) = timeout_and_lookback(&params)?;
    let q = QueryRequest {
        query: params.value("query").to_string(),
        kind: QueryKind::Instant(t),
        timeout_ns,
        lookback_ns,
        limit,
    };
    run_query(api, context(Endpoint::Query, params, headers), q).await
}

async fn query_range(State(api): ApiState, req: Request) -> Response {
    respond(query_range_impl(api, req).await)
}

async fn query_range_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, headers) = read_params(&api, req).await?;
    let limit = limit_param(&params)?;
    let start =
        parse_time(params.value("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = parse_time(params.value("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ns =
        parse_duration_ns(params.value("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    // Below a millisecond the engine's step would be zero.
    let step_ms = step_ns / 1_000_000;
    if step_ns <= 0 || step_ms == 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Same integer arithmetic as Go's `end.Sub(start)/step`, in nanoseconds.
    let points = (i128::from(end) - i128::from(start)) * 1_000_000 / i128::from(step_ns);
    let max = api.opts.max_points_per_series;
    if points > i128::from(max) {
        return Err(ApiError::bad_data(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            group_thousands(max)
        )));
    }
    let (timeout_ns, lookback_ns) = timeout_and_lookback(&params)?;
    let q = QueryRequest {
        query: params.value("query").to_string(),
        kind: QueryKind::Range {
            start,
            end,
            step: step_ms,
        },
        timeout_ns,
        lookback_ns,
        limit,
    };
    run_query(api, context(Endpoint::QueryRange, params, headers), q).await
}

/// Finds whether an expression contains a series selector.
struct HasSelector(bool);

impl ExprVisitor for HasSelector {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
        if matches!(e, Expr::VectorSelector(_) | Expr::MatrixSelector(_)) {
            self.0 = true;
            return Ok(false);
        }
        Ok(true)
    }
}

async fn query_exemplars(State(api): ApiState, req: Request) -> Response {
    respond(query_exemplars_impl(api, req).await)
}

/// Strata keeps no exemplars: a selector query gets `[]` (what Prometheus
/// answers with exemplar storage off), one without selectors 204 like
/// Prometheus.
async fn query_exemplars_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, _) = read_params(&api, req).await?;
    let start = time_param(&params, "start", MIN_TIME_MS)?;
    let end = time_param(&params, "end", MAX_TIME_MS)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let query = params.value("query").to_string();
    check_length(&api, "query", &query).map_err(ApiError::bad_data)?;
    let opts = api.opts.engine.clone();
    blocking(move || {
        let expr = strata_promql::parse(&query, &opts)
            .map_err(|e| ApiError::bad_data(query_error_message(e)))?;
        let mut v = HasSelector(false);
        let _ = walk_expr(&mut v, &expr);
        Ok(if v.0 {
            Success::data("[]".to_string())
        } else {
            Success::default()
        })
    })
    .await
}

async fn format_query(State(api): ApiState, req: Request) -> Response {
    respond(format_query_impl(api, req).await)
}

async fn format_query_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, _) = read_params(&api, req).await?;
    let query = params.value("query").to_string();
    check_length(&api, "query", &query).map_err(|e| ApiError::invalid_param("query", e))?;
    let opts = api.opts.engine.clone();
    blocking(move || {
        let pretty = strata_promql::format_query(&query, &opts)
            .map_err(|e| ApiError::invalid_param("query", query_error_message(e)))?;
        Ok(Success::data(string_json(&pretty)))
    })
    .await
}

async fn parse_query(State(api): ApiState, req: Request) -> Response {
    respond(parse_query_impl(api, req).await)
}

/// The AST as JSON, in the shape of Prometheus 3.0–3.5's `translateAST`
/// (`web/api/v1/translate_ast.go`; see [`ast_json`]). Prometheus marks this
/// endpoint experimental.
async fn parse_query_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, _) = read_params(&api, req).await?;
    let query = params.value("query").to_string();
    check_length(&api, "query", &query).map_err(|e| ApiError::invalid_param("query", e))?;
    let opts = api.opts.engine.clone();
    blocking(move || {
        let expr = strata_promql::parse(&query, &opts)
            .map_err(|e| ApiError::invalid_param("query", query_error_message(e)))?;
        let json = to_go_json(&ast_json::translate(&expr))
            .map_err(|e| ApiError::internal(format!("cannot encode the syntax tree: {e}")))?;
        Ok(Success::data(json))
    })
    .await
}

/// `/parse_query`'s answer: the syntax tree as Prometheus 3.0–3.5 encode it
/// for their UI's tree view (`translateAST`). Every node is an object with a
/// `type` (`aggregation`, `binaryExpr`, `call`, `matrixSelector`,
/// `subquery`, `numberLiteral`, `parenExpr`, `stringLiteral`, `unaryExpr`,
/// `vectorSelector`) and that node's fields; keys come out sorted, as Go
/// writes a map. The rules that are not obvious from the node types:
/// - a selector's `matchers` end with the `__name__` matcher when the
///   metric name was written outside the braces (Prometheus appends it);
///   `name` is only that outside name;
/// - `offset` and `range`/`step` are milliseconds (offset signed, 0 when
///   absent), `timestamp` is the `@` time in ms or null, `startOrEnd` is
///   `"start"`/`"end"` for `@ start()`/`@ end()` or null;
/// - a binary expression has `matching` only when both sides are instant
///   vectors (Prometheus drops it for scalar operands), with card
///   `many-to-many` for `and`/`or`/`unless`;
/// - number values are Go's shortest decimal form (`'f'`, no exponent),
///   `+Inf`, `-Inf`, `NaN`; a negative number literal is one literal;
/// - a function's `argTypes`, `variadic` and `returnType` come from the
///   function table.
///
/// Not reproduced: unary `+` (the parser drops it; Prometheus keeps a
/// `unaryExpr` with op `+`), and the fields Prometheus 3.7+ added for
/// experimental syntax (`rangeExpr`, `anchored`, `fillValues`, ...).
mod ast_json {
    use std::time::{Duration, SystemTime};

    use promql_parser::label::{MatchOp, Matchers, METRIC_NAME};
    use promql_parser::parser::value::ValueType;
    use promql_parser::parser::{
        AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
    };
    use serde_json::{json, Value};

    fn ms(d: &Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    fn offset_ms(o: &Option<Offset>) -> i64 {
        match o {
            None => 0,
            Some(Offset::Pos(d)) => ms(d),
            Some(Offset::Neg(d)) => -ms(d),
        }
    }

    /// `(timestamp, startOrEnd)` of an `@` modifier.
    fn at(a: &Option<AtModifier>) -> (Value, Value) {
        match a {
            None => (Value::Null, Value::Null),
            Some(AtModifier::Start) => (Value::Null, json!("start")),
            Some(AtModifier::End) => (Value::Null, json!("end")),
            Some(AtModifier::At(t)) => {
                let v = match t.duration_since(SystemTime::UNIX_EPOCH) {
                    Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                    Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
                };
                (json!(v), Value::Null)
            }
        }
    }

    /// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
    pub fn go_float(v: f64) -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else {
            // Rust's `Display` for f64 is the shortest round-trip digits
            // without an exponent, which is what 'f' with precision -1 is.
            format!("{v}")
        }
    }

    fn value_type(t: &ValueType) -> &'static str {
        match t {
            ValueType::Vector => "vector",
            ValueType::Scalar => "scalar",
            ValueType::Matrix => "matrix",
            ValueType::String => "string",
        }
    }

    fn matchers(vs: &VectorSelector) -> Value {
        let one = |m: &promql_parser::label::Matcher| {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Re(_) => "=~",
                MatchOp::NotRe(_) => "!~",
            };
            json!({"name": m.name, "value": m.value, "type": op})
        };
        let Matchers {
            matchers,
            or_matchers,
        } = &vs.matchers;
        let mut out: Vec<Value> = matchers.iter().map(one).collect();
        // `{a="1" or b="2"}` has no Prometheus 3.5 form; list every alternative.
        out.extend(or_matchers.iter().flatten().map(one));
        if let Some(name) = &vs.name {
            let has = matchers.iter().any(|m| {
                m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal) && &m.value == name
            });
            if !has {
                out.push(json!({"name": METRIC_NAME, "value": name, "type": "="}));
            }
        }
        Value::Array(out)
    }

    fn selector_fields(vs: &VectorSelector, kind: &str) -> serde_json::Map<String, Value> {
        let (timestamp, start_or_end) = at(&vs.at);
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("name".into(), json!(vs.name.clone().unwrap_or_default()));
        m.insert("offset".into(), json!(offset_ms(&vs.offset)));
        m.insert("matchers".into(), matchers(vs));
        m.insert("timestamp".into(), timestamp);
        m.insert("startOrEnd".into(), start_or_end);
        m
    }

    fn labels(l: Option<&promql_parser::label::Labels>) -> Value {
        json!(l.map(|l| l.labels.clone()).unwrap_or_default())
    }

    /// See the module docs.
    pub fn translate(e: &Expr) -> Value {
        match e {
            Expr::Aggregate(a) => json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": translate(&a.expr),
                "param": a.param.as_deref().map_or(Value::Null, translate),
                "grouping": labels(a.modifier.as_ref().map(LabelModifier::labels)),
                "without": matches!(a.modifier, Some(LabelModifier::Exclude(_))),
            }),
            Expr::Binary(b) => {
                let vectors = b.lhs.value_type() == ValueType::Vector
                    && b.rhs.value_type() == ValueType::Vector;
                let modifier = b.modifier.as_ref();
                let matching = if vectors {
                    let (card, include) = if b.op.is_set_operator() {
                        ("many-to-many", Value::Array(Vec::new()))
                    } else {
                        match modifier.map(|m| &m.card) {
                            Some(VectorMatchCardinality::ManyToOne(l)) => {
                                ("many-to-one", labels(Some(l)))
                            }
                            Some(VectorMatchCardinality::OneToMany(l)) => {
                                ("one-to-many", labels(Some(l)))
                            }
                            Some(VectorMatchCardinality::ManyToMany) => {
                                ("many-to-many", Value::Array(Vec::new()))
                            }
                            Some(VectorMatchCardinality::OneToOne) | None => {
                                ("one-to-one", Value::Array(Vec::new()))
                            }
                        }
                    };
                    let matching = modifier.and_then(|m| m.matching.as_ref());
                    json!({
                        "card": card,
                        "labels": labels(matching.map(LabelModifier::labels)),
                        "on": matches!(matching, Some(LabelModifier::Include(_))),
                        "include": include,
                    })
                } else {
                    Value::Null
                };
                json!({
                    "type": "binaryExpr",
                    "op": b.op.to_string(),
                    "lhs": translate(&b.lhs),
                    "rhs": translate(&b.rhs),
                    "matching": matching,
                    "bool": modifier.is_some_and(|m| m.return_bool),
                })
            }
            Expr::Call(c) => json!({
                "type": "call",
                "func": {
                    "name": c.func.name,
                    "argTypes": c.func.arg_types.iter().map(value_type).collect::<Vec<_>>(),
                    "variadic": c.func.variadic,
                    "returnType": value_type(&c.func.return_type),
                },
                "args": c.args.args.iter().map(|a| translate(a)).collect::<Vec<_>>(),
            }),
            Expr::MatrixSelector(m) => {
                let mut o = selector_fields(&m.vs, "matrixSelector");
                o.insert("range".into(), json!(ms(&m.range)));
                Value::Object(o)
            }
            Expr::VectorSelector(vs) => Value::Object(selector_fields(vs, "vectorSelector")),
            Expr::Subquery(s) => {
                let (timestamp, start_or_end) = at(&s.at);
                json!({
                    "type": "subquery",
                    "expr": translate(&s.expr),
                    "range": ms(&s.range),
                    "offset": offset_ms(&s.offset),
                    "step": s.step.as_ref().map_or(0, ms),
                    "timestamp": timestamp,
                    "startOrEnd": start_or_end,
                })
            }
            Expr::NumberLiteral(n) => json!({"type": "numberLiteral", "val": go_float(n.val)}),
            Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
            Expr::Paren(p) => json!({"type": "parenExpr", "expr": translate(&p.expr)}),
            Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": translate(&u.expr)}),
            // Not produced by parsing PromQL text.
            Expr::Extension(_) => Value::Null,
        }
    }

    #[cfg(test)]
    mod tests {
        //! Expected trees written by hand from `translateAST` and the
        //! Prometheus 3.5 parser's rules (name matcher appended, negative
        //! literals folded, matching dropped for scalar operands, set
        //! operators many-to-many, function table fields).
        use super::*;

        fn tree(q: &str) -> Value {
            let opts = strata_promql::EngineOptions::default();
            translate(&strata_promql::parse(q, &opts).unwrap())
        }

        #[test]
        fn aggregation_call_and_matrix_selector() {
            let want = json!({
                "type": "aggregation", "op": "sum", "grouping": ["job"], "without": false,
                "param": null,
                "expr": {
                    "type": "call",
                    "func": {"name": "rate", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"},
                    "args": [{
                        "type": "matrixSelector", "name": "http_requests_total",
                        "range": 300000, "offset": 60000, "timestamp": null, "startOrEnd": null,
                        "matchers": [
                            {"name": "code", "type": "=~", "value": "5.."},
                            {"name": "__name__", "type": "=", "value": "http_requests_total"}
                        ]
                    }]
                }
            });
            assert_eq!(
                tree(r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m] offset 1m))"#),
                want
            );
        }

        #[test]
        fn binary_matching_rules() {
            let sel = |name: &str| {
                json!({
                    "type": "vectorSelector", "name": name, "offset": 0, "timestamp": null,
                    "startOrEnd": null,
                    "matchers": [{"name": "__name__", "type": "=", "value": name}]
                })
            };
            assert_eq!(
                tree("a * on (x) group_left (y) b"),
                json!({
                    "type": "binaryExpr", "op": "*", "bool": false, "lhs": sel("a"), "rhs": sel("b"),
                    "matching": {"card": "many-to-one", "labels": ["x"], "on": true, "include": ["y"]}
                })
            );
            assert_eq!(
                tree("a and b")["matching"],
                json!({"card": "many-to-many", "labels": [], "on": false, "include": []})
            );
            assert_eq!(
                tree("a > bool ignoring (z) b")["matching"],
                json!({"card": "one-to-one", "labels": ["z"], "on": false, "include": []})
            );
            assert_eq!(tree("a > bool ignoring (z) b")["bool"], json!(true));
            // A scalar operand: no matching at all; -2 is one literal.
            assert_eq!(
                tree("a / -2"),
                json!({
                    "type": "binaryExpr", "op": "/", "bool": false, "matching": null,
                    "lhs": sel("a"), "rhs": {"type": "numberLiteral", "val": "-2"}
                })
            );
        }

        #[test]
        fn literals_parens_subqueries_and_modifiers() {
            assert_eq!(
                tree(r#"count_values("v", -(x))"#),
                json!({
                    "type": "aggregation", "op": "count_values", "grouping": [], "without": false,
                    "param": {"type": "stringLiteral", "val": "v"},
                    "expr": {"type": "unaryExpr", "op": "-", "expr": {"type": "parenExpr", "expr": {
                        "type": "vectorSelector", "name": "x", "offset": 0, "timestamp": null,
                        "startOrEnd": null,
                        "matchers": [{"name": "__name__", "type": "=", "value": "x"}]
                    }}}
                })
            );
            assert_eq!(
                tree(r#"max_over_time({__name__="up"} @ 100 [10m:30s] @ start() offset -5m)"#)
                    ["args"][0],
                json!({
                    "type": "subquery", "range": 600000, "step": 30000, "offset": -300000,
                    "timestamp": null, "startOrEnd": "start",
                    "expr": {
                        "type": "vectorSelector", "name": "", "offset": 0, "timestamp": 100000,
                        "startOrEnd": null,
                        "matchers": [{"name": "__name__", "type": "=", "value": "up"}]
                    }
                })
            );
            assert_eq!(
                tree("sum without (a, b) (x)")["grouping"],
                json!(["a", "b"])
            );
            assert_eq!(tree("sum without (a, b) (x)")["without"], json!(true));
            assert_eq!(
                tree("topk(3, x)")["param"],
                json!({"type": "numberLiteral", "val": "3"})
            );
            assert_eq!(tree("0.25")["val"], "0.25");
            assert_eq!(tree("1e21")["val"], "1000000000000000000000");
            assert_eq!(tree("Inf")["val"], "+Inf");
            assert_eq!(tree("-Inf")["val"], "-Inf");
            assert_eq!(tree("NaN")["val"], "NaN");
            assert_eq!(
                tree(r#"label_join(x, "d", ",", "a", "b")"#)["func"],
                json!({"name": "label_join", "argTypes": ["vector", "string", "string", "string"],
                       "variadic": -1, "returnType": "vector"})
            );
            assert_eq!(
                tree("round(x, 5)")["func"],
                json!({"name": "round", "argTypes": ["vector", "scalar"], "variadic": 1,
                       "returnType": "vector"})
            );
        }

        #[test]
        fn keys_are_sorted_as_go_writes_maps() {
            let s = crate::format::to_go_json(&tree("up")).unwrap();
            assert_eq!(
                s,
                r#"{"matchers":[{"name":"__name__","type":"=","value":"up"}],"name":"up","offset":0,"startOrEnd":null,"timestamp":null,"type":"vectorSelector"}"#
            );
        }
    }
}

fn string_json(s: &str) -> String {
    let mut out = String::new();
    crate::format::write_json_str(&mut out, s);
    out
}

/// Parameters shared by the three metadata endpoints.
struct MetaParams {
    limit: usize,
    start: i64,
    end: i64,
}

fn meta_params(params: &Params) -> Result<MetaParams, ApiError> {
    Ok(MetaParams {
        limit: limit_param(params)?,
        start: time_param(params, "start", MIN_TIME_MS)?,
        end: time_param(params, "end", MAX_TIME_MS)?,
    })
}

/// Prometheus' `toHintLimit`: one more than asked, to detect truncation.
fn hint(limit: usize) -> usize {
    if limit > 0 {
        limit.saturating_add(1)
    } else {
        0
    }
}

fn truncate<T>(items: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push(TRUNCATED.to_string());
    }
}

fn match_values(api: &Api, params: &Params) -> Result<Vec<String>, String> {
    let values: Vec<String> = params.get_all("match[]").map(str::to_string).collect();
    for v in &values {
        check_length(api, "match[]", v)?;
    }
    Ok(values)
}

async fn series(State(api): ApiState, req: Request) -> Response {
    respond(series_impl(api, req).await)
}

async fn series_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, headers) = read_params(&api, req).await?;
    if params.get_all("match[]").next().is_none() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let mp = meta_params(&params)?;
    let matches = match_values(&api, &params).map_err(|e| ApiError::invalid_param("match[]", e))?;
    let opts = api.opts.engine.clone();
    let backend = api.backend.clone();
    let ctx = context(Endpoint::Series, params, headers)
        .with_deadline(Some(deadline_after(api.opts.query_timeout)));
    blocking(move || {
        let sets = parse_match_params(matches.iter().map(String::as_str), &opts)
            .map_err(|e| ApiError::invalid_param("match[]", e))?;
        let q = MetadataQuery {
            matcher_sets: sets,
            start: mp.start,
            end: mp.end,
            limit_hint: hint(mp.limit),
        };
        let mut r = backend.series(&ctx, &q)?;
        r.data.sort();
        r.data.dedup();
        truncate(&mut r.data, mp.limit, &mut r.warnings);
        Ok(Success::data(labels_array_json(&r.data)).with_warnings(r.warnings))
    })
    .await
}

async fn labels(State(api): ApiState, req: Request) -> Response {
    respond(labels_impl(api, req, None).await)
}

async fn label_values(State(api): ApiState, Path(name): Path<String>, req: Request) -> Response {
    respond(labels_impl(api, req, Some(name)).await)
}

/// `/labels` (name = None) and `/label/<name>/values`.
async fn labels_impl(api: Arc<Api>, req: Request, name: Option<String>) -> ApiResult {
    let name = match name {
        Some(n) => {
            let n = unescape_label_name(&n);
            if n.is_empty() {
                return Err(ApiError::bad_data(format!(
                    "invalid label name: {}",
                    crate::params::go_quote(&n)
                )));
            }
            Some(n)
        }
        None => None,
    };
    let (params, headers) = read_params(&api, req).await?;
    let mp = meta_params(&params)?;
    let matches = match_values(&api, &params).map_err(ApiError::bad_data)?;
    let opts = api.opts.engine.clone();
    let backend = api.backend.clone();
    let endpoint = if name.is_some() {
        Endpoint::LabelValues
    } else {
        Endpoint::Labels
    };
    let ctx = context(endpoint, params, headers)
        .with_deadline(Some(deadline_after(api.opts.query_timeout)));
    blocking(move || {
        let sets = parse_match_params(matches.iter().map(String::as_str), &opts)
            .map_err(ApiError::bad_data)?;
        let q = MetadataQuery {
            matcher_sets: sets,
            start: mp.start,
            end: mp.end,
            limit_hint: hint(mp.limit),
        };
        let mut r = match &name {
            Some(n) => backend.label_values(&ctx, n, &q)?,
            None => backend.label_names(&ctx, &q)?,
        };
        r.data.sort();
        r.data.dedup();
        truncate(&mut r.data, mp.limit, &mut r.warnings);
        Ok(Success::data(string_array_json(&r.data)).with_warnings(r.warnings))
    })
    .await
}

/// Undoes the `U__` escaping clients use for UTF-8 label names in URL paths
/// (`U__my_2e_label` → `my.label`, `__` → `_`). An invalid escape leaves the
/// name as given, as Prometheus does.
fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let b = rest.as_bytes();
    let mut out = String::with_capacity(rest.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'_' {
            // Copy one whole character.
            let ch_len = rest[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        i += 1;
        match b.get(i) {
            None => return name.to_string(),
            Some(b'_') => {
                out.push('_');
                i += 1;
            }
            Some(_) => {
                let start = i;
                while i < b.len() && b[i] != b'_' {
                    i += 1;
                }
                if i >= b.len() || i - start > 6 || i == start {
                    return name.to_string();
                }
                let Some(c) = u32::from_str_radix(&rest[start..i], 16)
                    .ok()
                    .and_then(char::from_u32)
                else {
                    return name.to_string();
                };
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

async fn metadata(State(api): ApiState, req: Request) -> Response {
    respond(metadata_impl(api, req).await)
}

async fn metadata_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, headers) = read_params(&api, req).await?;
    // Prometheus: a negative limit means none; 0 gives an empty result.
    let number = |key: &str| -> Result<i64, ApiError> {
        match params.value(key) {
            "" => Ok(-1),
            v => v
                .parse::<i64>()
                .map_err(|_| ApiError::bad_data(format!("{key} must be a number"))),
        }
    };
    let limit = number("limit")?;
    let per_metric = number("limit_per_metric")?;
    let metric = params.value("metric").to_string();
    let backend = api.backend.clone();
    let ctx = context(Endpoint::Metadata, params, headers);
    blocking(move || {
        let all = backend.metadata(&ctx)?;
        let mut out = BTreeMap::new();
        for (family, mut entries) in all.data {
            if !metric.is_empty() && family != metric {
                continue;
            }
            if limit >= 0 && out.len() as i64 >= limit {
                break;
            }
            if per_metric > 0 {
                entries.truncate(usize::try_from(per_metric).unwrap_or(usize::MAX));
            }
            out.insert(family, entries);
        }
        let json = to_go_json(&out).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Success::data(json).with_warnings(all.warnings))
    })
    .await
}

async fn targets(State(api): ApiState, req: Request) -> Response {
    respond(targets_impl(api, req).await)
}

async fn targets_impl(api: Arc<Api>, req: Request) -> ApiResult {
    let (params, headers) = read_params(&api, req).await?;
    let backend = api.backend.clone();
    let ctx = context(Endpoint::Targets, params, headers);
    blocking(move || {
        let v = backend.targets(&ctx)?;
        let json = to_go_json(&v).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Success::data(json))
    })
    .await
}

async fn rules() -> Response {
    respond(Ok(Success::data(r#"{"groups":[]}"#.to_string())))
}

async fn alerts() -> Response {
    respond(Ok(Success::data(r#"{"alerts":[]}"#.to_string())))
}

/// Runs a status provider on a blocking thread and encodes its answer.
async fn status<T, F>(api: Arc<Api>, f: F) -> Response
where
    T: serde::Serialize,
    F: FnOnce(&Api) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let r = blocking(move || {
        let v = f(&api)?;
        let json = to_go_json(&v).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Success::data(json))
    })
    .await;
    respond(r)
}

async fn buildinfo(State(api): ApiState) -> Response {
    status(api, |api| Ok(api.backend.build_info())).await
}

async fn config(State(api): ApiState) -> Response {
    status(api, |api| {
        Ok(serde_json::json!({ "yaml": api.backend.config_yaml() }))
    })
    .await
}

async fn flags(State(api): ApiState) -> Response {
    status(api, |api| Ok(api.backend.flags())).await
}

async fn runtimeinfo(State(api): ApiState) -> Response {
    status(api, |api| {
        let mut info = api.backend.runtime_info();
        if info.start_time.is_empty() {
            info.start_time = format_system_time(api.started);
        }
        if info.last_config_time.is_empty() {
            info.last_config_time = info.start_time.clone();
        }
        if info.cwd.is_empty() {
            info.cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
        }
        if info.gomaxprocs == 0 {
            info.gomaxprocs = std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1);
        }
        info.server_time = format_system_time(SystemTime::now());
        Ok(info)
    })
    .await
}

async fn tsdb_status(State(api): ApiState, req: Request) -> Response {
    let r = async {
        let (params, _) = read_params(&api, req).await?;
        const MAX_LIMIT: usize = 10_000;
        let limit = match params.value("limit") {
            "" => 10,
            v => match v.parse::<i64>() {
                Ok(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(ApiError::bad_data("limit must be a positive number")),
            },
        };
        if limit > MAX_LIMIT {
            return Err(ApiError::bad_data(format!(
                "limit must not exceed {MAX_LIMIT}"
            )));
        }
        Ok(limit)
    }
    .await;
    match r {
        Err(e) => respond(Err(e)),
        Ok(limit) => {
            status(api, move |api| {
                api.backend.tsdb_status(limit)?.ok_or_else(|| {
                    ApiError::new(
                        crate::ErrorType::NotFound,
                        "TSDB status is not available on this server",
                    )
                })
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(11_000), "11,000");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
        assert_eq!(group_thousands(0), "0");
    }

    #[test]
    fn label_name_unescaping() {
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(unescape_label_name("U__my_2e_label"), "my.label");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
        assert_eq!(unescape_label_name("U__caf_e9_"), "café");
        assert_eq!(unescape_label_name("U__bad_zz_"), "U__bad_zz_");
        assert_eq!(unescape_label_name("U__open_2e"), "U__open_2e");
        assert_eq!(unescape_label_name("U__trail_"), "U__trail_");
    }
}
