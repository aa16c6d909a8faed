//! The engine's own expression tree.
//!
//! promql-parser's AST is converted once into [`Node`]s, which differ from it
//! in the ways evaluation needs:
//! - every node knows its start offset in the query text (recovered with
//!   [`crate::lex::Cursor`]), for annotation positions;
//! - times are plain milliseconds, matchers are `strata_tsdb` matchers, and
//!   functions and operators are enums rather than strings;
//! - every selector has an id indexing the series the engine pre-selects;
//! - step-invariant subtrees are wrapped in [`Kind::StepInvariant`] (see
//!   [`preprocess`]), so they are evaluated once per query, not once per step.

use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{
    self as pp, AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality,
};
use strata_tsdb::labels::{MatchType, Matcher, METRIC_NAME};

use crate::engine::QueryError;
use crate::lex::{go_unquote, Cursor, TokKind};

/// Largest duration accepted anywhere (offsets, ranges, steps): Go's
/// `time.Duration` limit, about 292 years.
pub(crate) const MAX_DURATION_MS: i64 = i64::MAX / 1_000_000;
/// Largest absolute timestamp accepted (`@`, query times). Keeping times well
/// inside `i64` means `t - offset - range - lookback` can never overflow.
pub(crate) const MAX_ABS_TIME_MS: i64 = i64::MAX / 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl VType {
    /// Prometheus' `DocumentedType` names.
    pub fn documented(self) -> &'static str {
        match self {
            VType::Scalar => "scalar",
            VType::Vector => "instant vector",
            VType::Matrix => "range vector",
            VType::String => "string",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtTime {
    Ts(i64),
    Start,
    End,
}

impl AtTime {
    pub fn ts(self) -> Option<i64> {
        match self {
            AtTime::Ts(t) => Some(t),
            _ => None,
        }
    }
}

/// A vector selector (also the inside of a range selector).
#[derive(Clone, Debug)]
pub(crate) struct Selector {
    pub matchers: Vec<Matcher>,
    /// The offset as written (ms, may be negative).
    pub offset: i64,
    pub at: Option<AtTime>,
    /// Index into the series the engine selected before evaluation.
    pub id: usize,
    /// Experimental `anchored`/`smoothed` range modifier.
    pub ext: RangeExt,
}

/// The experimental modifiers of a range selector (`x[5m] anchored`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RangeExt {
    #[default]
    None,
    /// The window also takes the last sample before it (within the lookback).
    Anchored,
    /// Like anchored, plus the first sample after it; boundary values interpolated.
    Smoothed,
    /// `metric smoothed`: an instant selector interpolating between the
    /// samples around each step.
    SmoothedInstant,
}

#[derive(Clone, Debug)]
pub(crate) struct Subquery {
    pub expr: Node,
    pub range: i64,
    /// 0 means "use the engine's default subquery step".
    pub step: i64,
    pub offset: i64,
    pub at: Option<AtTime>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Func {
    Abs,
    /// `info(v, {data labels})`: adds labels of info series (experimental).
    Info,
    Absent,
    AbsentOverTime,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    AvgOverTime,
    Ceil,
    Changes,
    Clamp,
    ClampMax,
    ClampMin,
    Cos,
    Cosh,
    CountOverTime,
    DaysInMonth,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Deg,
    Delta,
    Deriv,
    DoubleExponentialSmoothing,
    Exp,
    FirstOverTime,
    Floor,
    HistogramAvg,
    HistogramCount,
    HistogramFraction,
    HistogramQuantile,
    HistogramQuantiles,
    HistogramStddev,
    HistogramStdvar,
    HistogramSum,
    Hour,
    Idelta,
    Increase,
    Irate,
    LabelJoin,
    LabelReplace,
    LastOverTime,
    Ln,
    Log10,
    Log2,
    MadOverTime,
    MaxOf,
    MaxOverTime,
    MinOf,
    MinOverTime,
    Minute,
    Month,
    Pi,
    PredictLinear,
    PresentOverTime,
    QuantileOverTime,
    Rad,
    Rate,
    Resets,
    Round,
    Scalar,
    Sgn,
    Sin,
    Sinh,
    Sort,
    SortByLabel,
    SortByLabelDesc,
    SortDesc,
    Sqrt,
    StartTimestamp,
    StddevOverTime,
    StdvarOverTime,
    SumOverTime,
    Tan,
    Tanh,
    Time,
    Timestamp,
    TsOfFirstOverTime,
    TsOfLastOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    Vector,
    Year,
}

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        use Func::*;
        Some(match name {
            "abs" => Abs,
            "info" => Info,
            "absent" => Absent,
            "absent_over_time" => AbsentOverTime,
            "acos" => Acos,
            "acosh" => Acosh,
            "asin" => Asin,
            "asinh" => Asinh,
            "atan" => Atan,
            "atanh" => Atanh,
            "avg_over_time" => AvgOverTime,
            "ceil" => Ceil,
            "changes" => Changes,
            "clamp" => Clamp,
            "clamp_max" => ClampMax,
            "clamp_min" => ClampMin,
            "cos" => Cos,
            "cosh" => Cosh,
            "count_over_time" => CountOverTime,
            "days_in_month" => DaysInMonth,
            "day_of_month" => DayOfMonth,
            "day_of_week" => DayOfWeek,
            "day_of_year" => DayOfYear,
            "deg" => Deg,
            "delta" => Delta,
            "deriv" => Deriv,
            "double_exponential_smoothing" => DoubleExponentialSmoothing,
            "exp" => Exp,
            "first_over_time" => FirstOverTime,
            "floor" => Floor,
            "histogram_avg" => HistogramAvg,
            "histogram_count" => HistogramCount,
            "histogram_fraction" => HistogramFraction,
            "histogram_quantile" => HistogramQuantile,
            "histogram_quantiles" => HistogramQuantiles,
            "histogram_stddev" => HistogramStddev,
            "histogram_stdvar" => HistogramStdvar,
            "histogram_sum" => HistogramSum,
            "hour" => Hour,
            "idelta" => Idelta,
            "increase" => Increase,
            "irate" => Irate,
            "label_join" => LabelJoin,
            "label_replace" => LabelReplace,
            "last_over_time" => LastOverTime,
            "ln" => Ln,
            "log10" => Log10,
            "log2" => Log2,
            "mad_over_time" => MadOverTime,
            "max_of" => MaxOf,
            "max_over_time" => MaxOverTime,
            "min_of" => MinOf,
            "min_over_time" => MinOverTime,
            "minute" => Minute,
            "month" => Month,
            "pi" => Pi,
            "predict_linear" => PredictLinear,
            "present_over_time" => PresentOverTime,
            "quantile_over_time" => QuantileOverTime,
            "rad" => Rad,
            "rate" => Rate,
            "resets" => Resets,
            "round" => Round,
            "scalar" => Scalar,
            "sgn" => Sgn,
            "sin" => Sin,
            "sinh" => Sinh,
            "sort" => Sort,
            "sort_by_label" => SortByLabel,
            "sort_by_label_desc" => SortByLabelDesc,
            "sort_desc" => SortDesc,
            "sqrt" => Sqrt,
            "start_timestamp" => StartTimestamp,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "sum_over_time" => SumOverTime,
            "tan" => Tan,
            "tanh" => Tanh,
            "time" => Time,
            "timestamp" => Timestamp,
            "ts_of_first_over_time" => TsOfFirstOverTime,
            "ts_of_last_over_time" => TsOfLastOverTime,
            "ts_of_max_over_time" => TsOfMaxOverTime,
            "ts_of_min_over_time" => TsOfMinOverTime,
            "vector" => Vector,
            "year" => Year,
            _ => return None,
        })
    }

    /// Functions whose result depends on the evaluation time even when their
    /// arguments do not (Prometheus' `AtModifierUnsafeFunctions`). They are
    /// never treated as step invariant.
    pub fn at_modifier_unsafe(self) -> bool {
        use Func::*;
        matches!(
            self,
            DaysInMonth
                | DayOfMonth
                | DayOfWeek
                | DayOfYear
                | Hour
                | Minute
                | Month
                | Year
                | PredictLinear
                | Time
                | Timestamp
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
}

impl AggOp {
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::CountValues => "count_values",
            AggOp::Quantile => "quantile",
            AggOp::Limitk => "limitk",
            AggOp::LimitRatio => "limit_ratio",
        }
    }

    fn from_token(id: TokenId) -> Option<AggOp> {
        Some(match id {
            token::T_SUM => AggOp::Sum,
            token::T_AVG => AggOp::Avg,
            token::T_COUNT => AggOp::Count,
            token::T_MIN => AggOp::Min,
            token::T_MAX => AggOp::Max,
            token::T_GROUP => AggOp::Group,
            token::T_STDDEV => AggOp::Stddev,
            token::T_STDVAR => AggOp::Stdvar,
            token::T_TOPK => AggOp::Topk,
            token::T_BOTTOMK => AggOp::Bottomk,
            token::T_COUNT_VALUES => AggOp::CountValues,
            token::T_QUANTILE => AggOp::Quantile,
            token::T_LIMITK => AggOp::Limitk,
            token::T_LIMIT_RATIO => AggOp::LimitRatio,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
    /// `</`: trims the upper part, keeping observations below the right-hand value.
    TrimUpper,
    /// `>/`: trims the lower part, keeping observations above the right-hand value.
    TrimLower,
}

impl BinOp {
    fn from_token(id: TokenId) -> Option<BinOp> {
        Some(match id {
            token::T_ADD => BinOp::Add,
            token::T_SUB => BinOp::Sub,
            token::T_MUL => BinOp::Mul,
            token::T_DIV => BinOp::Div,
            token::T_MOD => BinOp::Mod,
            token::T_POW => BinOp::Pow,
            token::T_ATAN2 => BinOp::Atan2,
            token::T_EQLC => BinOp::Eql,
            token::T_NEQ => BinOp::Neq,
            token::T_GTR => BinOp::Gtr,
            token::T_LSS => BinOp::Lss,
            token::T_GTE => BinOp::Gte,
            token::T_LTE => BinOp::Lte,
            token::T_LAND => BinOp::And,
            token::T_LOR => BinOp::Or,
            token::T_LUNLESS => BinOp::Unless,
            _ => return None,
        })
    }

    /// The operator as written in PromQL.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eql => "==",
            BinOp::Neq => "!=",
            BinOp::Gtr => ">",
            BinOp::Lss => "<",
            BinOp::Gte => ">=",
            BinOp::Lte => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
            BinOp::TrimUpper => "</",
            BinOp::TrimLower => ">/",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Arithmetic changes what a metric means, so the result loses its name
    /// (Prometheus' `changesMetricSchema`).
    pub fn changes_metric_schema(self) -> bool {
        matches!(
            self,
            BinOp::Add
                | BinOp::Sub
                | BinOp::Mul
                | BinOp::Div
                | BinOp::Pow
                | BinOp::Mod
                | BinOp::Atan2
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// How the two sides of a vector/vector operation are matched.
#[derive(Clone, Debug)]
pub(crate) struct Matching {
    pub card: Card,
    /// `on(...)` when true, `ignoring(...)` otherwise.
    pub on: bool,
    pub labels: Vec<String>,
    /// Extra labels copied from the "one" side (`group_left(...)`).
    pub include: Vec<String>,
    /// Experimental `fill(v)`/`fill_left(v)`/`fill_right(v)`: the value an
    /// unmatched element's missing partner takes, per side (left, right).
    pub fill: (Option<f64>, Option<f64>),
}

#[derive(Clone, Debug)]
pub(crate) struct CallNode {
    pub func: Func,
    pub args: Vec<Node>,
}

#[derive(Clone, Debug)]
pub(crate) struct AggNode {
    pub op: AggOp,
    pub expr: Node,
    pub param: Option<Node>,
    /// Sorted grouping labels.
    pub grouping: Vec<String>,
    pub without: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct BinNode {
    pub op: BinOp,
    pub lhs: Node,
    pub rhs: Node,
    pub return_bool: bool,
    /// Present exactly when both sides are vectors.
    pub matching: Option<Matching>,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Number(f64),
    /// The value, and the raw bytes Go would have decoded (which may be
    /// invalid UTF-8 where promql-parser produced code points).
    Str(String, Vec<u8>),
    Vector(Box<Selector>),
    Matrix(Box<Selector>, i64),
    Subquery(Box<Subquery>),
    Call(Box<CallNode>),
    Agg(Box<AggNode>),
    Binary(Box<BinNode>),
    Neg(Box<Node>),
    Paren(Box<Node>),
    StepInvariant(Box<Node>),
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    /// Byte offset of the node's first character in the query.
    pub pos: usize,
}

impl Node {
    pub fn vtype(&self) -> VType {
        match &self.kind {
            Kind::Number(_) => VType::Scalar,
            Kind::Str(..) => VType::String,
            Kind::Vector(_) => VType::Vector,
            Kind::Matrix(..) | Kind::Subquery(_) => VType::Matrix,
            Kind::Call(c) => func_return_type(c.func),
            Kind::Agg(_) => VType::Vector,
            Kind::Binary(b) => {
                if b.lhs.vtype() == VType::Scalar && b.rhs.vtype() == VType::Scalar {
                    VType::Scalar
                } else {
                    VType::Vector
                }
            }
            Kind::Neg(n) | Kind::Paren(n) | Kind::StepInvariant(n) => n.vtype(),
        }
    }

    /// The node with any enclosing parentheses removed.
    pub fn unparen(&self) -> &Node {
        let mut n = self;
        while let Kind::Paren(inner) = &n.kind {
            n = inner;
        }
        n
    }
}

fn func_return_type(f: Func) -> VType {
    match f {
        Func::Pi | Func::Time | Func::Scalar | Func::MaxOf | Func::MinOf => VType::Scalar,
        _ => VType::Vector,
    }
}

/// Conversion state.
pub(crate) struct Converter<'q> {
    cur: Cursor<'q>,
    next_selector: usize,
    experimental: bool,
    /// The query's evaluation range, to fold `start()`/`end()`/`range()`/`step()`.
    pub query_start: i64,
    pub query_end: i64,
    pub query_step: i64,
    /// Offsets of `>=`/`<=` operators that were trim operators in the
    /// original text (see `lex::rewrite_trim_ops`).
    pub trim_positions: Vec<usize>,
    /// Offsets of range brackets followed by `anchored`/`smoothed` in the
    /// original text (see `lex::rewrite_range_modifiers`).
    pub range_ext: Vec<(usize, RangeExt)>,
}

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::BadData(msg.into())
}

fn duration_ms(d: &Duration) -> Result<i64, QueryError> {
    let ms = d.as_millis();
    if ms > MAX_DURATION_MS as u128 {
        return Err(bad("duration out of range"));
    }
    Ok(ms as i64)
}

/// Ranges and subquery steps must be positive (Prometheus rejects `[0s]`).
fn positive_duration_ms(d: &Duration) -> Result<i64, QueryError> {
    match duration_ms(d)? {
        0 => Err(bad("duration must be greater than 0")),
        ms => Ok(ms),
    }
}

fn offset_ms(o: &Option<Offset>) -> Result<i64, QueryError> {
    Ok(match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d)?,
        Some(Offset::Neg(d)) => -duration_ms(d)?,
    })
}

fn at_time(a: &Option<AtModifier>) -> Result<Option<AtTime>, QueryError> {
    Ok(match a {
        None => None,
        Some(AtModifier::Start) => Some(AtTime::Start),
        Some(AtModifier::End) => Some(AtTime::End),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => d.as_millis().min(u128::from(u64::MAX)) as i128,
                Err(e) => -(e.duration().as_millis().min(u128::from(u64::MAX)) as i128),
            };
            if ms.abs() > MAX_ABS_TIME_MS as i128 {
                return Err(bad(format!(
                    "timestamp out of bounds for @ modifier: {}",
                    ms as f64 / 1000.0
                )));
            }
            Some(AtTime::Ts(ms as i64))
        }
    })
}

fn convert_matchers(name: &Option<String>, ms: &Matchers) -> Result<Vec<Matcher>, QueryError> {
    if !ms.or_matchers.is_empty() {
        return Err(bad("unexpected \"or\" in label matching"));
    }
    let mut out = Vec::with_capacity(ms.matchers.len() + 1);
    for m in &ms.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        let matcher = match Matcher::new(kind, m.name.clone(), m.value.clone()) {
            Ok(x) => x,
            Err(e) => {
                // promql-parser accepts Go-only regex syntax (a literal `{`)
                // by escaping it; retry with its escaped form.
                let escaped = match &m.op {
                    MatchOp::Re(r) | MatchOp::NotRe(r) => r
                        .as_str()
                        .strip_prefix("^(?:")
                        .and_then(|s| s.strip_suffix(")$"))
                        .map(str::to_string),
                    _ => None,
                };
                match escaped.and_then(|p| Matcher::new(kind, m.name.clone(), p).ok()) {
                    Some(x) => x,
                    None => return Err(bad(e.to_string())),
                }
            }
        };
        out.push(matcher);
    }
    if let Some(n) = name {
        out.push(Matcher::equal(METRIC_NAME, n.clone()));
    }
    Ok(out)
}

fn label_list(l: &promql_parser::label::Labels) -> Vec<String> {
    l.labels.clone()
}

impl<'q> Converter<'q> {
    pub fn new(query: &'q str, experimental: bool) -> Self {
        Converter {
            cur: Cursor::new(query),
            next_selector: 0,
            experimental,
            query_start: 0,
            query_end: 0,
            query_step: 0,
            trim_positions: Vec::new(),
            range_ext: Vec::new(),
        }
    }

    /// Number of selectors seen (selector ids are `0..n`).
    pub fn selectors(&self) -> usize {
        self.next_selector
    }

    fn skip_plus(&mut self) {
        while self.cur.is_op("+") {
            self.cur.bump();
        }
    }

    /// Skips `offset <dur>` and `@ <time>` modifiers in any order.
    fn skip_modifiers(&mut self) {
        loop {
            if self.cur.eat_ident("offset") {
                while self.cur.is_op("-") || self.cur.is_op("+") {
                    self.cur.bump();
                }
                self.cur.bump();
            } else if self.cur.eat(TokKind::At) {
                while self.cur.is_op("-") || self.cur.is_op("+") {
                    self.cur.bump();
                }
                if self.cur.is_ident("start") || self.cur.is_ident("end") {
                    self.cur.bump();
                    self.cur.skip_paren_group();
                } else {
                    self.cur.bump();
                }
            } else {
                return;
            }
        }
    }

    fn new_selector(
        &mut self,
        vs: &pp::VectorSelector,
        range: Option<&Duration>,
    ) -> Result<(Box<Selector>, usize), QueryError> {
        self.skip_plus();
        let pos = self.cur.pos();
        if self.cur.is(TokKind::Ident) {
            self.cur.bump();
        }
        if self.cur.is(TokKind::Brace) {
            self.cur.bump();
        }
        let mut ext = RangeExt::None;
        if range.is_some() && self.cur.is(TokKind::Bracket) {
            if let Some(&(_, e)) = self.range_ext.iter().find(|(p, _)| *p == self.cur.pos()) {
                ext = e;
            }
            self.cur.bump();
        }
        self.skip_modifiers();
        if range.is_none() {
            let end = self.cur.pos();
            if self
                .range_ext
                .iter()
                .any(|&(p, e)| e == RangeExt::SmoothedInstant && p >= pos && p < end)
            {
                ext = RangeExt::SmoothedInstant;
            }
        }
        let sel = Selector {
            matchers: convert_matchers(&vs.name, &vs.matchers)?,
            offset: offset_ms(&vs.offset)?,
            at: at_time(&vs.at)?,
            id: self.next_selector,
            ext,
        };
        self.next_selector += 1;
        Ok((Box::new(sel), pos))
    }

    pub fn convert(&mut self, e: &Expr) -> Result<Node, QueryError> {
        match e {
            Expr::NumberLiteral(n) => {
                self.skip_plus();
                let pos = self.cur.pos();
                // A negated literal is folded into the literal (by both parsers),
                // so the literal's text starts at the sign.
                while self.cur.is_op("-") || self.cur.is_op("+") {
                    self.cur.bump();
                }
                self.cur.bump();
                Ok(Node {
                    kind: Kind::Number(n.val),
                    pos,
                })
            }
            Expr::StringLiteral(s) => {
                self.skip_plus();
                let pos = self.cur.pos();
                let raw = match self.cur.peek() {
                    Some(t) if t.kind == TokKind::Str => go_unquote(t.text),
                    _ => None,
                };
                if self.cur.is(TokKind::Str) {
                    self.cur.bump();
                }
                let raw = raw.unwrap_or_else(|| s.val.as_bytes().to_vec());
                Ok(Node {
                    kind: Kind::Str(s.val.clone(), raw),
                    pos,
                })
            }
            Expr::Paren(p) => {
                self.skip_plus();
                let pos = self.cur.pos();
                self.cur.eat(TokKind::LParen);
                let inner = self.convert(&p.expr)?;
                self.cur.eat(TokKind::RParen);
                Ok(Node {
                    kind: Kind::Paren(Box::new(inner)),
                    pos,
                })
            }
            Expr::Unary(u) => {
                self.skip_plus();
                let pos = self.cur.pos();
                if self.cur.is_op("-") {
                    self.cur.bump();
                }
                let inner = self.convert(&u.expr)?;
                Ok(Node {
                    kind: Kind::Neg(Box::new(inner)),
                    pos,
                })
            }
            Expr::VectorSelector(vs) => {
                let (sel, pos) = self.new_selector(vs, None)?;
                Ok(Node {
                    kind: Kind::Vector(sel),
                    pos,
                })
            }
            Expr::MatrixSelector(ms) => {
                let range = positive_duration_ms(&ms.range)?;
                let (sel, pos) = self.new_selector(&ms.vs, Some(&ms.range))?;
                Ok(Node {
                    kind: Kind::Matrix(sel, range),
                    pos,
                })
            }
            Expr::Subquery(sq) => {
                self.skip_plus();
                let pos = self.cur.pos();
                let inner = self.convert(&sq.expr)?;
                if self.cur.is(TokKind::Bracket) {
                    self.cur.bump();
                }
                self.skip_modifiers();
                let step = match &sq.step {
                    Some(s) => positive_duration_ms(s)?,
                    None => 0,
                };
                Ok(Node {
                    kind: Kind::Subquery(Box::new(Subquery {
                        expr: inner,
                        range: positive_duration_ms(&sq.range)?,
                        step,
                        offset: offset_ms(&sq.offset)?,
                        at: at_time(&sq.at)?,
                    })),
                    pos,
                })
            }
            Expr::Call(c) => self.convert_call(c),
            Expr::Aggregate(a) => self.convert_agg(a),
            Expr::Binary(b) => self.convert_binary(b),
            Expr::Extension(_) => Err(bad("unsupported expression")),
        }
    }

    fn convert_call(&mut self, c: &pp::Call) -> Result<Node, QueryError> {
        self.skip_plus();
        let pos = self.cur.pos();
        let name = c.func.name;
        if self.cur.is(TokKind::Ident) {
            self.cur.bump();
        }
        self.cur.eat(TokKind::LParen);
        let known = Func::from_name(name).is_some()
            || matches!(name, "start" | "end" | "range" | "step" | "info");
        if !known {
            return Err(bad(format!("unknown function with name {name:?}")));
        }
        if c.func.experimental && !self.experimental {
            return Err(bad(format!("function {name:?} is not enabled")));
        }
        // The query-context functions are constants for one query; fold them
        // like Prometheus does so the surrounding expression stays step invariant.
        let folded = match name {
            "start" => Some(self.query_start as f64 / 1000.0),
            "end" => Some(self.query_end as f64 / 1000.0),
            "range" => Some((self.query_end - self.query_start) as f64 / 1000.0),
            "step" => Some(if self.query_start != self.query_end {
                self.query_step as f64 / 1000.0
            } else {
                0.0
            }),
            _ => None,
        };
        if let Some(v) = folded {
            self.cur.eat(TokKind::RParen);
            return Ok(Node {
                kind: Kind::Number(v),
                pos,
            });
        }
        let func = match Func::from_name(name) {
            Some(f) => f,
            None => return Err(bad(format!("unknown function with name {name:?}"))),
        };
        let mut args = Vec::with_capacity(c.args.args.len());
        for (i, a) in c.args.args.iter().enumerate() {
            if i > 0 {
                self.cur.eat(TokKind::Comma);
            }
            args.push(self.convert(a)?);
        }
        self.cur.eat(TokKind::RParen);
        if func == Func::Info && args.len() == 1 {
            // `info(v)` means `info(v, {__name__="target_info"})`; the
            // engine needs a selector slot for the info series either way
            // (an empty matcher list means "target_info, all labels").
            let id = self.next_selector;
            self.next_selector += 1;
            args.push(Node {
                kind: Kind::Vector(Box::new(Selector {
                    matchers: Vec::new(),
                    offset: 0,
                    at: None,
                    id,
                    ext: RangeExt::None,
                })),
                pos,
            });
        }
        Ok(Node {
            kind: Kind::Call(Box::new(CallNode { func, args })),
            pos,
        })
    }

    fn skip_grouping_clause(&mut self) {
        if self.cur.is_ident("by") || self.cur.is_ident("without") {
            self.cur.bump();
            self.cur.skip_paren_group();
        }
    }

    fn convert_agg(&mut self, a: &pp::AggregateExpr) -> Result<Node, QueryError> {
        self.skip_plus();
        let pos = self.cur.pos();
        let op = AggOp::from_token(a.op.id())
            .ok_or_else(|| bad(format!("unknown aggregation operator {}", a.op)))?;
        if matches!(op, AggOp::Limitk | AggOp::LimitRatio) && !self.experimental {
            return Err(bad(format!(
                "{}() is experimental and must be enabled with --enable-feature=promql-experimental-functions",
                op.name()
            )));
        }
        if self.cur.is(TokKind::Ident) {
            self.cur.bump();
        }
        self.skip_grouping_clause();
        self.cur.eat(TokKind::LParen);
        let param = match &a.param {
            Some(p) => {
                let n = self.convert(p)?;
                self.cur.eat(TokKind::Comma);
                Some(n)
            }
            None => None,
        };
        let expr = self.convert(&a.expr)?;
        self.cur.eat(TokKind::RParen);
        self.skip_grouping_clause();
        let (mut grouping, without) = match &a.modifier {
            None => (Vec::new(), false),
            Some(LabelModifier::Include(l)) => (label_list(l), false),
            Some(LabelModifier::Exclude(l)) => (label_list(l), true),
        };
        grouping.sort();
        Ok(Node {
            kind: Kind::Agg(Box::new(AggNode {
                op,
                expr,
                param,
                grouping,
                without,
            })),
            pos,
        })
    }

    fn convert_binary(&mut self, b: &pp::BinaryExpr) -> Result<Node, QueryError> {
        let op = BinOp::from_token(b.op.id()).ok_or_else(|| {
            bad(format!(
                "binary expression does not support operator {:?}",
                b.op.to_string()
            ))
        })?;
        let lhs = self.convert(&b.lhs)?;
        let pos = lhs.pos;
        let op = match op {
            BinOp::Gte if self.trim_positions.contains(&self.cur.pos()) => BinOp::TrimLower,
            BinOp::Lte if self.trim_positions.contains(&self.cur.pos()) => BinOp::TrimUpper,
            op => op,
        };
        // The operator itself, then `bool`, `on(...)`/`ignoring(...)` and
        // `group_left(...)`/`group_right(...)`.
        self.cur.bump();
        self.cur.eat_ident("bool");
        if self.cur.is_ident("on") || self.cur.is_ident("ignoring") {
            self.cur.bump();
            self.cur.skip_paren_group();
        }
        if self.cur.is_ident("group_left") || self.cur.is_ident("group_right") {
            self.cur.bump();
            self.cur.skip_paren_group();
        }
        while self.cur.is_ident("fill")
            || self.cur.is_ident("fill_left")
            || self.cur.is_ident("fill_right")
        {
            self.cur.bump();
            self.cur.skip_paren_group();
        }
        let rhs = self.convert(&b.rhs)?;
        let both_vectors = lhs.vtype() == VType::Vector && rhs.vtype() == VType::Vector;
        let mut return_bool = false;
        let mut matching = None;
        let mut fill = (None, None);
        if let Some(m) = &b.modifier {
            return_bool = m.return_bool;
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                if !self.experimental {
                    return Err(bad("binop fill modifiers are experimental and not enabled"));
                }
                fill = (m.fill_values.lhs, m.fill_values.rhs);
            }
        }
        if both_vectors {
            let mut mt = Matching {
                card: if op.is_set() {
                    Card::ManyToMany
                } else {
                    Card::OneToOne
                },
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
                fill,
            };
            if let Some(m) = &b.modifier {
                match &m.card {
                    VectorMatchCardinality::OneToOne => {}
                    VectorMatchCardinality::ManyToMany => mt.card = Card::ManyToMany,
                    VectorMatchCardinality::ManyToOne(l) => {
                        mt.card = Card::ManyToOne;
                        mt.include = label_list(l);
                    }
                    VectorMatchCardinality::OneToMany(l) => {
                        mt.card = Card::OneToMany;
                        mt.include = label_list(l);
                    }
                }
                match &m.matching {
                    None => {}
                    Some(LabelModifier::Include(l)) => {
                        mt.on = true;
                        mt.labels = label_list(l);
                    }
                    Some(LabelModifier::Exclude(l)) => {
                        mt.labels = label_list(l);
                    }
                }
            }
            if op.is_set() && matches!(mt.card, Card::ManyToOne | Card::OneToMany) {
                return Err(bad(format!(
                    "no grouping allowed for {:?} operation",
                    b.op.to_string()
                )));
            }
            if !op.is_set() && mt.card == Card::ManyToMany {
                mt.card = Card::OneToOne;
            }
            matching = Some(mt);
        }
        Ok(Node {
            kind: Kind::Binary(Box::new(BinNode {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            })),
            pos,
        })
    }
}

/// Resolves `@ start()`/`@ end()` and wraps step-invariant subtrees in
/// [`Kind::StepInvariant`], mirroring Prometheus' `PreprocessExpr`.
/// Also strips parentheses around function arguments and aggregation
/// operands, which the evaluator relies on to recognise selector arguments.
pub(crate) fn preprocess(node: Node, start: i64, end: i64) -> Node {
    let (node, _, wrap) = pre(node, start, end);
    if wrap {
        wrap_invariant(node)
    } else {
        node
    }
}

fn wrap_invariant(n: Node) -> Node {
    let pos = n.pos;
    Node {
        kind: Kind::StepInvariant(Box::new(n)),
        pos,
    }
}

fn resolve_at(at: &mut Option<AtTime>, start: i64, end: i64) {
    match at {
        Some(AtTime::Start) => *at = Some(AtTime::Ts(start)),
        Some(AtTime::End) => *at = Some(AtTime::Ts(end)),
        _ => {}
    }
}

fn unparen_owned(mut n: Node) -> Node {
    loop {
        match n.kind {
            Kind::Paren(inner) => n = *inner,
            other => {
                return Node {
                    kind: other,
                    pos: n.pos,
                }
            }
        }
    }
}

/// Returns the rewritten node, whether it is step invariant, and whether it
/// should be wrapped if its parent is not invariant.
fn pre(node: Node, start: i64, end: i64) -> (Node, bool, bool) {
    let pos = node.pos;
    match node.kind {
        Kind::Vector(mut sel) => {
            resolve_at(&mut sel.at, start, end);
            let inv = sel.at.is_some();
            (
                Node {
                    kind: Kind::Vector(sel),
                    pos,
                },
                inv,
                inv,
            )
        }
        Kind::Matrix(mut sel, range) => {
            resolve_at(&mut sel.at, start, end);
            let inv = sel.at.is_some();
            (
                Node {
                    kind: Kind::Matrix(sel, range),
                    pos,
                },
                inv,
                false,
            )
        }
        Kind::Agg(mut a) => {
            let expr = unparen_owned(std::mem::replace(&mut a.expr, dummy()));
            if let Some(p) = a.param.take() {
                // Prometheus leaves the parameter alone here; it is evaluated
                // per step anyway. Resolving `@ start()` inside it is harmless.
                a.param = Some(pre(unparen_owned(p), start, end).0);
            }
            let (expr, inv, wrap) = pre(expr, start, end);
            a.expr = expr;
            (
                Node {
                    kind: Kind::Agg(a),
                    pos,
                },
                inv,
                wrap,
            )
        }
        Kind::Binary(mut b) => {
            let (lhs, li, lw) = pre(std::mem::replace(&mut b.lhs, dummy()), start, end);
            let (rhs, ri, rw) = pre(std::mem::replace(&mut b.rhs, dummy()), start, end);
            if li && ri {
                b.lhs = lhs;
                b.rhs = rhs;
                return (
                    Node {
                        kind: Kind::Binary(b),
                        pos,
                    },
                    true,
                    true,
                );
            }
            b.lhs = if lw { wrap_invariant(lhs) } else { lhs };
            b.rhs = if rw { wrap_invariant(rhs) } else { rhs };
            (
                Node {
                    kind: Kind::Binary(b),
                    pos,
                },
                false,
                false,
            )
        }
        Kind::Call(mut c) => {
            let mut inv = !c.func.at_modifier_unsafe();
            let mut timestamp_special = c.func == Func::Timestamp;
            let mut wraps = Vec::with_capacity(c.args.len());
            let args = std::mem::take(&mut c.args);
            let mut new_args = Vec::with_capacity(args.len());
            for a in args {
                let a = unparen_owned(a);
                let (a, ai, aw) = pre(a, start, end);
                inv &= ai;
                if !ai || !matches!(a.kind, Kind::Vector(_)) {
                    timestamp_special = false;
                }
                wraps.push(aw);
                new_args.push(a);
            }
            if inv || timestamp_special {
                c.args = new_args;
                return (
                    Node {
                        kind: Kind::Call(c),
                        pos,
                    },
                    true,
                    true,
                );
            }
            c.args = new_args
                .into_iter()
                .zip(wraps)
                .map(|(a, w)| if w { wrap_invariant(a) } else { a })
                .collect();
            (
                Node {
                    kind: Kind::Call(c),
                    pos,
                },
                false,
                false,
            )
        }
        Kind::Subquery(mut s) => {
            let inner = std::mem::replace(&mut s.expr, dummy());
            let (inner, ii, _) = pre(inner, start, end);
            s.expr = if ii { wrap_invariant(inner) } else { inner };
            resolve_at(&mut s.at, start, end);
            let inv = s.at.is_some();
            (
                Node {
                    kind: Kind::Subquery(s),
                    pos,
                },
                inv,
                false,
            )
        }
        Kind::Paren(inner) => {
            let (inner, i, w) = pre(*inner, start, end);
            (
                Node {
                    kind: Kind::Paren(Box::new(inner)),
                    pos,
                },
                i,
                w,
            )
        }
        Kind::Neg(inner) => {
            let (inner, i, w) = pre(*inner, start, end);
            (
                Node {
                    kind: Kind::Neg(Box::new(inner)),
                    pos,
                },
                i,
                w,
            )
        }
        k @ (Kind::Number(_) | Kind::Str(..)) => (Node { kind: k, pos }, true, false),
        k @ Kind::StepInvariant(_) => (Node { kind: k, pos }, true, false),
    }
}

fn dummy() -> Node {
    Node {
        kind: Kind::Number(0.0),
        pos: 0,
    }
}

/// Depth of the tree, computed without recursion so it is safe on any tree.
pub(crate) fn depth(root: &Expr) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(root, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => {
                for a in &c.args.args {
                    stack.push((a, d + 1));
                }
            }
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(q: &str) -> Node {
        let e = promql_parser::parser::parse(q).unwrap();
        Converter::new(q, true).convert(&e).unwrap()
    }

    fn call(n: &Node) -> &CallNode {
        match &n.unparen().kind {
            Kind::Call(c) => c,
            k => panic!("not a call: {k:?}"),
        }
    }

    #[test]
    fn positions_follow_the_source() {
        let n = conv("rate(foo[5m] offset 1m)");
        assert_eq!(n.pos, 0);
        assert_eq!(call(&n).args[0].pos, 5);

        let q = r#"sum by (foo) (foo{a="}"}) + on(x) group_left(y) -  bar > bool 3"#;
        let n = conv(q);
        let Kind::Binary(b) = &n.kind else { panic!() };
        // `>` binds looser than `+`: (sum + -bar) > bool 3.
        let Kind::Binary(inner) = &b.lhs.kind else {
            panic!()
        };
        let Kind::Agg(a) = &inner.lhs.kind else {
            panic!()
        };
        assert_eq!(a.expr.pos, q.find("foo{").unwrap());
        assert_eq!(inner.rhs.pos, q.find("-  bar").unwrap());
        assert_eq!(b.rhs.pos, q.len() - 1);

        let q = "quantile_over_time(-0.5, foo[1m:])";
        let c = conv(q);
        let c = call(&c);
        assert!(matches!(c.args[0].kind, Kind::Number(v) if v == -0.5));
        assert_eq!(c.args[0].pos, 19);
        assert_eq!(c.args[1].pos, 25);

        let q = "topk(\n  2,\n  x)";
        let n = conv(q);
        let Kind::Agg(a) = &n.kind else { panic!() };
        assert_eq!(
            crate::lex::line_col(q, a.param.as_ref().unwrap().pos),
            "2:3"
        );
        assert_eq!(crate::lex::line_col(q, a.expr.pos), "3:3");
    }

    #[test]
    fn step_invariant_parts_are_wrapped() {
        let n = preprocess(conv("foo @ 10 + bar"), 0, 0);
        let Kind::Binary(b) = &n.kind else { panic!() };
        assert!(matches!(b.lhs.kind, Kind::StepInvariant(_)));
        assert!(matches!(b.rhs.kind, Kind::Vector(_)));

        let n = preprocess(conv("rate(foo[5m] @ end())"), 0, 60_000);
        let Kind::StepInvariant(inner) = &n.kind else {
            panic!()
        };
        let Kind::Matrix(sel, _) = &call(inner).args[0].kind else {
            panic!()
        };
        assert_eq!(sel.at, Some(AtTime::Ts(60_000)));

        // time() depends on the step, so the whole expression is not invariant.
        let n = preprocess(conv("time() + 1"), 0, 0);
        assert!(matches!(n.kind, Kind::Binary(_)));
    }

    #[test]
    fn conversion_errors() {
        let bad = |q: &str| {
            let e = promql_parser::parser::parse(q).unwrap();
            Converter::new(q, false)
                .convert(&e)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad("sort_by_label(foo, \"a\")"),
            "function \"sort_by_label\" is not enabled"
        );
        assert!(bad("limitk(1, foo)").contains("limitk() is experimental"));
    }
}
