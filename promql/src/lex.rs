//! A small, forgiving tokenizer over the query text.
//!
//! promql-parser's AST carries no source positions, but Prometheus ends every
//! warning and info annotation with the `line:col` of the expression that
//! caused it (`... (1:6)`). This tokenizer lets `ast::convert` walk the query
//! text alongside the AST and recover each node's start offset.
//!
//! It is also the basis of the pre-parse guard in `parser`: counting nesting
//! depth and operators here, before promql-parser ever sees the text, is what
//! protects the process from the parser's unbounded recursion.
//!
//! It never fails: text it does not understand becomes `Other` tokens, and a
//! position it cannot recover is just a less precise annotation.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Identifiers and keywords, including `Inf`/`NaN` and metric names with `:`.
    Ident,
    /// Numbers and durations: anything starting with a digit or a dot.
    Number,
    /// A quoted string (any of the three quote styles).
    Str,
    LParen,
    RParen,
    /// A whole `{...}` label-matcher group.
    Brace,
    /// A whole `[...]` range or subquery group.
    Bracket,
    Comma,
    /// An operator: `+ - * / % ^ == != <= >= < > = =~ !~`.
    Op,
    At,
    Other,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Tok<'a> {
    pub kind: TokKind,
    pub text: &'a str,
    pub start: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Returns the index just past the string literal starting at `i`
/// (which holds the quote character), or the end of input if unterminated.
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        j += 1;
        if c == q {
            return j;
        }
    }
    b.len()
}

/// Returns the index just past the group closed by `close`, starting at the
/// opening character at `i`. Strings inside are skipped so a `}` in a label
/// value does not end the group.
fn skip_group(b: &[u8], i: usize, open: u8, close: u8) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        let c = b[j];
        if c == b'"' || c == b'\'' || c == b'`' {
            j = skip_string(b, j);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return j + 1;
            }
        }
        j += 1;
    }
    b.len()
}

pub(crate) fn tokenize(q: &str) -> Vec<Tok<'_>> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                TokKind::Str
            }
            b'(' => {
                i += 1;
                TokKind::LParen
            }
            b')' => {
                i += 1;
                TokKind::RParen
            }
            b'{' => {
                i = skip_group(b, i, b'{', b'}');
                TokKind::Brace
            }
            b'[' => {
                i = skip_group(b, i, b'[', b']');
                TokKind::Bracket
            }
            b',' => {
                i += 1;
                TokKind::Comma
            }
            b'@' => {
                i += 1;
                TokKind::At
            }
            b'=' | b'!' | b'<' | b'>' => {
                i += 1;
                if i < b.len() && (b[i] == b'=' || b[i] == b'~') {
                    i += 1;
                }
                TokKind::Op
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                i += 1;
                TokKind::Op
            }
            c if c.is_ascii_digit() || c == b'.' => {
                i += 1;
                let hex = c == b'0' && i < b.len() && (b[i] == b'x' || b[i] == b'X');
                while i < b.len() {
                    let d = b[i];
                    // Exponent signs belong to the number (`1e-3`), but not
                    // in hex literals, where `e` is a digit (`0x1e-1`).
                    let exp_sign = (d == b'+' || d == b'-')
                        && !hex
                        && matches!(b[i - 1], b'e' | b'E')
                        && i + 1 < b.len()
                        && b[i + 1].is_ascii_digit();
                    if is_ident_char(d) || d == b'.' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                TokKind::Number
            }
            c if is_ident_start(c) => {
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                TokKind::Ident
            }
            _ => {
                // Skip a whole UTF-8 character so slicing stays on boundaries.
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                TokKind::Other
            }
        };
        out.push(Tok {
            kind,
            text: &q[start..i.min(b.len())],
            start,
        });
    }
    out
}

/// Rewrites the trim operators `>/` and `</`, which promql-parser 0.11.1
/// cannot parse, into `>=` and `<=`: same length (so every position in the
/// text stays valid for annotations) and same precedence (Prometheus puts
/// the trim operators on the comparison level). Returns the rewritten text
/// and the offsets of the rewritten operators, so the AST converter can turn
/// exactly those back into trim operators; `None` when there are none.
///
/// Only a `>`/`<` operator token immediately followed by a `/` operator
/// token is rewritten, as Prometheus' lexer reads it; `>` then `/` is
/// invalid PromQL otherwise, so no valid query changes meaning.
pub(crate) fn rewrite_trim_ops(q: &str) -> Option<(String, Vec<usize>)> {
    let toks = tokenize(q);
    let pos: Vec<usize> = toks
        .windows(2)
        .filter(|w| {
            w[0].kind == TokKind::Op
                && (w[0].text == ">" || w[0].text == "<")
                && w[1].kind == TokKind::Op
                && w[1].text == "/"
                && w[1].start == w[0].start + 1
        })
        .map(|w| w[0].start)
        .collect();
    if pos.is_empty() {
        return None;
    }
    let mut b = q.as_bytes().to_vec();
    for &p in &pos {
        b[p + 1] = b'=';
    }
    Some((String::from_utf8(b).ok()?, pos))
}

/// Blanks the experimental range modifiers `anchored` and `smoothed`
/// directly after a range (`x[5m] anchored`), which promql-parser cannot
/// parse, with spaces (so positions stay valid). Returns the text and the
/// offsets of the ranges' `[` with their modifier; `None` when there are none.
pub(crate) fn rewrite_range_modifiers(
    q: &str,
) -> Option<(String, Vec<(usize, crate::ast::RangeExt)>)> {
    use crate::ast::RangeExt;
    let toks = tokenize(q);
    let mut found = Vec::new();
    let mut b = q.as_bytes().to_vec();
    for (i, w) in toks.windows(2).enumerate() {
        if w[1].kind != TokKind::Ident {
            continue;
        }
        let ext = if w[1].text.eq_ignore_ascii_case("anchored") {
            RangeExt::Anchored
        } else if w[1].text.eq_ignore_ascii_case("smoothed") {
            RangeExt::Smoothed
        } else {
            continue;
        };
        if w[0].kind == TokKind::Bracket {
            found.push((w[0].start, ext));
        } else if ext == RangeExt::Smoothed
            && matches!(
                w[0].kind,
                TokKind::Ident | TokKind::Brace | TokKind::Number | TokKind::RParen
            )
            && !toks.get(i + 2).is_some_and(|n| {
                matches!(n.kind, TokKind::LParen | TokKind::Brace | TokKind::Bracket)
            })
        {
            // `metric smoothed` (instant vector, possibly after offset/@):
            // recorded at the keyword itself.
            found.push((w[1].start, RangeExt::SmoothedInstant));
        } else {
            continue;
        }
        for x in &mut b[w[1].start..w[1].start + w[1].text.len()] {
            *x = b' ';
        }
    }
    if found.is_empty() {
        return None;
    }
    Some((String::from_utf8(b).ok()?, found))
}

/// Puts range modifiers back after the brackets at `ordinals` (indexes
/// among all `[...]` groups) of a printed query.
pub(crate) fn restore_range_modifiers(
    printed: &str,
    ordinals: &[(usize, crate::ast::RangeExt)],
) -> String {
    let mut out = String::with_capacity(printed.len() + 16);
    let mut last = 0;
    let brackets = tokenize(printed)
        .into_iter()
        .filter(|t| t.kind == TokKind::Bracket);
    for (i, t) in brackets.enumerate() {
        if let Some((_, e)) = ordinals.iter().find(|(o, _)| *o == i) {
            let end = t.start + t.text.len();
            out.push_str(&printed[last..end]);
            out.push_str(match e {
                crate::ast::RangeExt::Smoothed => " smoothed",
                _ => " anchored",
            });
            last = end;
        }
    }
    out.push_str(&printed[last..]);
    out
}

/// Which `[...]` groups (by ordinal) of a text start at the given offsets.
pub(crate) fn bracket_ordinals(
    text: &str,
    found: &[(usize, crate::ast::RangeExt)],
) -> Vec<(usize, crate::ast::RangeExt)> {
    tokenize(text)
        .into_iter()
        .filter(|t| t.kind == TokKind::Bracket)
        .enumerate()
        .filter_map(|(i, t)| {
            found
                .iter()
                .find(|(p, _)| *p == t.start)
                .map(|(_, e)| (i, *e))
        })
        .collect()
}

/// The `>=`/`<=` operator tokens of `q`, in order.
fn ge_le_tokens(q: &str) -> Vec<Tok<'_>> {
    tokenize(q)
        .into_iter()
        .filter(|t| t.kind == TokKind::Op && (t.text == ">=" || t.text == "<="))
        .collect()
}

/// Which `>=`/`<=` operators (by ordinal) of a rewritten query were trim
/// operators (see [`rewrite_trim_ops`]).
pub(crate) fn trim_ordinals(rewritten: &str, pos: &[usize]) -> Vec<usize> {
    ge_le_tokens(rewritten)
        .iter()
        .enumerate()
        .filter(|(_, t)| pos.contains(&t.start))
        .map(|(i, _)| i)
        .collect()
}

/// Turns the `>=`/`<=` operators at `ordinals` of a printed query back into
/// trim operators. Printing keeps the operators in source order.
pub(crate) fn restore_trim_ops(printed: &str, ordinals: &[usize]) -> String {
    let mut b = printed.as_bytes().to_vec();
    for (i, t) in ge_le_tokens(printed).iter().enumerate() {
        if ordinals.contains(&i) {
            b[t.start + 1] = b'/';
        }
    }
    String::from_utf8(b).unwrap_or_else(|_| printed.to_string())
}

/// A cursor over the tokens, used while converting the AST.
pub(crate) struct Cursor<'a> {
    toks: Vec<Tok<'a>>,
    i: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(q: &'a str) -> Self {
        Cursor {
            toks: tokenize(q),
            i: 0,
            end: q.len(),
        }
    }

    pub fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.i)
    }

    /// Start offset of the current token (end of input when exhausted).
    pub fn pos(&self) -> usize {
        self.peek().map(|t| t.start).unwrap_or(self.end)
    }

    pub fn bump(&mut self) -> Option<Tok<'a>> {
        let t = self.toks.get(self.i).copied();
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    pub fn is(&self, kind: TokKind) -> bool {
        self.peek().is_some_and(|t| t.kind == kind)
    }

    pub fn is_op(&self, op: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == TokKind::Op && t.text == op)
    }

    pub fn is_ident(&self, name: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == TokKind::Ident && t.text.eq_ignore_ascii_case(name))
    }

    pub fn eat(&mut self, kind: TokKind) -> bool {
        if self.is(kind) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub fn eat_ident(&mut self, name: &str) -> bool {
        if self.is_ident(name) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Skips a balanced `( ... )` group if one starts here.
    pub fn skip_paren_group(&mut self) {
        if !self.is(TokKind::LParen) {
            return;
        }
        let mut depth = 0usize;
        while let Some(t) = self.bump() {
            match t.kind {
                TokKind::LParen => depth += 1,
                TokKind::RParen => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Statistics used by the pre-parse guard.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Deepest nesting of `(`, `{` and `[`.
    pub max_nesting: usize,
    /// Number of operator tokens (each can add one level to the AST).
    pub operators: usize,
}

/// Measures how deep the AST of `q` can possibly get, without parsing it.
/// Every level of the AST comes either from a bracket or from an operator, so
/// `max_nesting + operators` bounds the depth from above.
pub(crate) fn shape(q: &str) -> Shape {
    let b = q.as_bytes();
    let mut s = Shape::default();
    let mut depth = 0usize;
    // Matchers inside `{...}` use `=`, `!=`, ... too, but add no AST depth.
    let mut braces = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'{' | b'[' => {
                depth += 1;
                s.max_nesting = s.max_nesting.max(depth);
                if c == b'{' {
                    braces += 1;
                }
            }
            b')' | b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if c == b'}' {
                    braces = braces.saturating_sub(1);
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' if braces == 0 => {
                s.operators += 1;
                // Two-character operators (`==`, `!=`, `<=`, `>=`) count once.
                if i + 1 < b.len() && b[i + 1] == b'=' {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let st = i;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                let w = &q[st..i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                {
                    s.operators += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    s
}

/// Decodes a PromQL string literal the way Go's `strconv.Unquote` does,
/// returning raw bytes. Go allows `\xNN` escapes that produce invalid UTF-8,
/// which Prometheus then rejects as label names; promql-parser maps them to
/// code points instead, so the engine re-decodes the source text to tell.
pub(crate) fn go_unquote(lit: &str) -> Option<Vec<u8>> {
    let b = lit.as_bytes();
    if b.len() < 2 {
        return None;
    }
    let q = b[0];
    if b[b.len() - 1] != q {
        return None;
    }
    let inner = &b[1..b.len() - 1];
    if q == b'`' {
        return Some(inner.to_vec());
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *inner.get(i + 1)?;
        i += 2;
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let h = std::str::from_utf8(inner.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let o = std::str::from_utf8(inner.get(i - 1..i + 2)?).ok()?;
                let v = u32::from_str_radix(o, 8).ok()?;
                out.push(u8::try_from(v).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let h = std::str::from_utf8(inner.get(i..i + n)?).ok()?;
                let ch = char::from_u32(u32::from_str_radix(h, 16).ok()?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Quotes bytes like Go's `%q` does (used in error messages about strings
/// that are not valid UTF-8).
pub(crate) fn go_quote_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => strata_tsdb::labels::go_quote(s),
        Err(_) => {
            let mut out = String::from("\"");
            let mut rest = b;
            while !rest.is_empty() {
                match std::str::from_utf8(rest) {
                    Ok(s) => {
                        let q = strata_tsdb::labels::go_quote(s);
                        out.push_str(&q[1..q.len() - 1]);
                        break;
                    }
                    Err(e) => {
                        let (good, bad) = rest.split_at(e.valid_up_to());
                        if let Ok(s) = std::str::from_utf8(good) {
                            let q = strata_tsdb::labels::go_quote(s);
                            out.push_str(&q[1..q.len() - 1]);
                        }
                        if let Some(&x) = bad.first() {
                            out.push_str(&format!("\\x{x:02x}"));
                        }
                        rest = bad.get(1..).unwrap_or(&[]);
                    }
                }
            }
            out.push('"');
            out
        }
    }
}

/// Converts a byte offset into Prometheus' `line:col` (1-based, columns in bytes).
pub(crate) fn line_col(q: &str, pos: usize) -> String {
    if q.is_empty() {
        return "unknown position".into();
    }
    if pos > q.len() {
        return "invalid position".into();
    }
    let mut line = 1;
    let mut last_break: isize = -1;
    for (i, c) in q.as_bytes()[..pos].iter().enumerate() {
        if *c == b'\n' {
            last_break = i as isize;
            line += 1;
        }
    }
    format!("{}:{}", line, pos as isize - last_break)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<(TokKind, &str)> {
        tokenize(q).into_iter().map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn tokenizes_selectors_and_numbers() {
        use TokKind::*;
        assert_eq!(
            kinds(r#"rate(foo{a="}"}[5m]) offset -1e-3 > bool 2"#),
            vec![
                (Ident, "rate"),
                (LParen, "("),
                (Ident, "foo"),
                (Brace, r#"{a="}"}"#),
                (Bracket, "[5m]"),
                (RParen, ")"),
                (Ident, "offset"),
                (Op, "-"),
                (Number, "1e-3"),
                (Op, ">"),
                (Ident, "bool"),
                (Number, "2"),
            ]
        );
        assert_eq!(kinds("0x1e-1").len(), 3);
    }

    #[test]
    fn shape_counts_nesting_and_operators() {
        let s = shape("((a + b) * c) and d{x=\"(((\"} >= 1");
        assert_eq!(s.max_nesting, 2);
        assert_eq!(s.operators, 4);
    }

    #[test]
    fn go_unquote_keeps_raw_bytes() {
        assert_eq!(go_unquote(r#""a\xc5z""#).unwrap(), b"a\xc5z");
        assert_eq!(go_unquote(r#"'\101\n'"#).unwrap(), b"A\n");
        assert_eq!(go_unquote("`\\x`").unwrap(), b"\\x");
        assert_eq!(go_quote_bytes(b"a\xc5z"), r#""a\xc5z""#);
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("abc", 0), "1:1");
        assert_eq!(line_col("a\nbc", 3), "2:2");
    }

    #[test]
    fn trim_operators_are_rewritten_and_restored() {
        let q = r#"h >/ 1 + (x{a=">/"} </ 2) >= 3"#;
        let (text, pos) = rewrite_trim_ops(q).unwrap();
        assert_eq!(text, r#"h >= 1 + (x{a=">/"} <= 2) >= 3"#);
        assert_eq!(pos, vec![2, 20]);
        let ords = trim_ordinals(&text, &pos);
        assert_eq!(ords, vec![0, 1]);
        // Printing may change spacing and parentheses, not operator order.
        assert_eq!(
            restore_trim_ops("h >= 1 + (x{a=\">/\"} <= 2) >= 3", &ords),
            "h >/ 1 + (x{a=\">/\"} </ 2) >= 3"
        );
        assert_eq!(rewrite_trim_ops("a > /b/"), None);
        assert_eq!(rewrite_trim_ops("a >= b"), None);
    }

    #[test]
    fn range_modifiers_are_blanked_and_restored() {
        use crate::ast::RangeExt;
        let q = "rate(x[1m] anchored) + increase(y[5m:1m]) - delta(z[2m] SMOOTHED)";
        let (text, found) = rewrite_range_modifiers(q).unwrap();
        assert_eq!(text.len(), q.len());
        assert_eq!(
            text,
            "rate(x[1m]         ) + increase(y[5m:1m]) - delta(z[2m]         )"
        );
        assert_eq!(
            found,
            vec![(6, RangeExt::Anchored), (51, RangeExt::Smoothed)]
        );
        let ords = bracket_ordinals(&text, &found);
        assert_eq!(ords, vec![(0, RangeExt::Anchored), (2, RangeExt::Smoothed)]);
        assert_eq!(
            restore_range_modifiers("rate(x[1m]) + increase(y[5m:1m]) - delta(z[2m])", &ords),
            "rate(x[1m] anchored) + increase(y[5m:1m]) - delta(z[2m] smoothed)"
        );
        assert_eq!(rewrite_range_modifiers("x anchored"), None);
    }
}
