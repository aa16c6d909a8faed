//! Experimental duration expressions (`foo[5m+step()]`, `offset (1m*2)`),
//! which promql-parser 0.11.1 cannot parse.
//!
//! Before parsing, [`rewrite`] evaluates every duration expression of the
//! query text and replaces it by a plain millisecond literal (`360000ms`):
//!
//! - inside `[...]` (a range, or a subquery's range and step), any part
//!   that is not already a plain duration or number;
//! - after `offset`, a parenthesised expression or a call of `step()`,
//!   `range()`, `min_of(..)` or `max_of(..)`, with an optional sign. As in
//!   Prometheus, without parentheses `offset` takes only that one term:
//!   `x offset 2 * 2` is `(x offset 2) * 2`. An offset that comes out as 0
//!   is dropped (the parser rejects zero durations).
//!
//! Expressions are numbers (seconds) and durations combined with `+ - * / %
//! ^`, parentheses, `step()` (the query step, 0 for instant queries),
//! `range()` (end minus start) and `min_of`/`max_of`. The rewritten text is
//! what the engine parses and reports annotation positions in.

use crate::lex::{tokenize, TokKind};

/// Longest expression text evaluated, so a hostile query cannot recurse deeply.
const MAX_EXPR_LEN: usize = 1024;

/// The query with its duration expressions evaluated, or `None` when it has
/// none. `step_ms`/`range_ms` are the values of `step()` and `range()`.
pub(crate) fn rewrite(q: &str, step_ms: i64, range_ms: i64) -> Result<Option<String>, String> {
    let toks = tokenize(q);
    let ctx = Ctx {
        step: step_ms as f64 / 1000.0,
        range: range_ms as f64 / 1000.0,
    };
    // (start, end, replacement) edits, in order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let closed = t.text.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
        if let (TokKind::Bracket, Some(inner)) = (t.kind, closed) {
            let inner_start = t.start + 1;
            let mut offset = 0;
            for part in split_top_level_colon(inner) {
                let trimmed = part.trim();
                if !trimmed.is_empty() && !is_plain(trimmed) {
                    let secs = ctx.eval(trimmed)?;
                    let lead = part.len() - part.trim_start().len();
                    let s = inner_start + offset + lead;
                    edits.push((s, s + trimmed.len(), ms_literal(secs)?));
                }
                offset += part.len() + 1;
            }
        } else if t.kind == TokKind::Ident && t.text.eq_ignore_ascii_case("offset") {
            if let Some((s, e)) = offset_operand(q, &toks, i + 1) {
                let text = &q[s..e];
                if !is_plain(text.trim_start_matches(['-', '+']).trim()) {
                    let secs = ctx.eval(text)?;
                    let lit = ms_literal(secs)?;
                    if lit == "0ms" {
                        // The parser rejects a zero duration; offset 0 is no offset.
                        edits.push((t.start, e, String::new()));
                    } else {
                        edits.push((s, e, lit));
                    }
                }
            }
        }
        i += 1;
    }
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(q.len());
    let mut last = 0;
    for (s, e, r) in edits {
        out.push_str(&q[last..s]);
        out.push_str(&r);
        last = e;
    }
    out.push_str(&q[last..]);
    Ok(Some(out))
}

/// `offset`'s operand when it is an expression: `(…)` or a call of a
/// duration function, with an optional sign. Returns its text span.
fn offset_operand(q: &str, toks: &[crate::lex::Tok<'_>], mut j: usize) -> Option<(usize, usize)> {
    let start = toks.get(j)?.start;
    if toks
        .get(j)
        .is_some_and(|t| t.kind == TokKind::Op && (t.text == "-" || t.text == "+"))
    {
        j += 1;
    }
    let t = toks.get(j)?;
    let is_fn = t.kind == TokKind::Ident
        && ["step", "range", "min_of", "max_of"]
            .iter()
            .any(|f| t.text.eq_ignore_ascii_case(f))
        && toks.get(j + 1).is_some_and(|n| n.kind == TokKind::LParen);
    if is_fn {
        j += 1;
    } else if t.kind != TokKind::LParen {
        return None;
    }
    // Find the matching `)`.
    let mut depth = 0usize;
    for t in &toks[j..] {
        match t.kind {
            TokKind::LParen => depth += 1,
            TokKind::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let end = t.start + 1;
                    return (end <= q.len()).then_some((start, end));
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at `:` outside parentheses (a subquery's range and step).
fn split_top_level_colon(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&s[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[last..]);
    parts
}

/// A plain duration (`5m`, `1h30m`) or number, which the parser reads itself.
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        && s.as_bytes()[0].is_ascii_digit()
}

fn ms_literal(secs: f64) -> Result<String, String> {
    let ms = (secs * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 9.2e15 {
        return Err(format!("duration out of range: {secs}s"));
    }
    Ok(format!("{}ms", ms as i64))
}

struct Ctx {
    step: f64,
    range: f64,
}

/// A recursive-descent evaluator over the expression text (in seconds).
struct P<'a> {
    s: &'a [u8],
    i: usize,
    ctx: &'a Ctx,
    depth: usize,
}

impl Ctx {
    fn eval(&self, text: &str) -> Result<f64, String> {
        if text.len() > MAX_EXPR_LEN {
            return Err("duration expression too long".into());
        }
        let mut p = P {
            s: text.as_bytes(),
            i: 0,
            ctx: self,
            depth: 0,
        };
        let v = p.expr()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!(
                "unexpected {:?} in duration expression",
                &text[p.i..]
            ));
        }
        Ok(v)
    }
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expr(&mut self) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > 200 {
            return Err("duration expression nested too deeply".into());
        }
        let mut v = self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            v = if c == b'+' { v + r } else { v - r };
        }
        self.depth -= 1;
        Ok(v)
    }

    fn term(&mut self) -> Result<f64, String> {
        let mut v = self.unary()?;
        while let Some(c @ (b'*' | b'/' | b'%')) = self.peek() {
            self.i += 1;
            let r = self.unary()?;
            v = match c {
                b'*' => v * r,
                b'/' => v / r,
                _ => v % r,
            };
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                Ok(-self.unary()?)
            }
            Some(b'+') => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.atom()?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let e = self.unary()?;
            return Ok(base.powf(e));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek() != Some(b')') {
                    return Err("expected `)` in duration expression".into());
                }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number_or_duration(),
            Some(c) if c.is_ascii_alphabetic() => {
                let st = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let name = String::from_utf8_lossy(&self.s[st..self.i]).to_ascii_lowercase();
                if self.peek() != Some(b'(') {
                    return Err(format!("unexpected {name:?} in duration expression"));
                }
                self.i += 1;
                let v = match name.as_str() {
                    "step" => self.ctx.step,
                    "range" => self.ctx.range,
                    "min_of" | "max_of" => {
                        let a = self.expr()?;
                        if self.peek() != Some(b',') {
                            return Err(format!("{name}() needs two arguments"));
                        }
                        self.i += 1;
                        let b = self.expr()?;
                        if name == "min_of" {
                            a.min(b)
                        } else {
                            a.max(b)
                        }
                    }
                    _ => return Err(format!("unknown duration function {name:?}")),
                };
                if self.peek() != Some(b')') {
                    return Err("expected `)` in duration expression".into());
                }
                self.i += 1;
                Ok(v)
            }
            _ => Err("expected a duration or number".into()),
        }
    }

    /// `1.5`, `90`, `5m`, `1h30m`, `8000ms`: seconds.
    fn number_or_duration(&mut self) -> Result<f64, String> {
        let st = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || self.s[self.i] == b'.'
                || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        let text = String::from_utf8_lossy(&self.s[st..self.i]).to_string();
        if let Ok(v) = text.replace('_', "").parse::<f64>() {
            return Ok(v);
        }
        let mut total = 0.0;
        let b = text.as_bytes();
        let mut k = 0;
        while k < b.len() {
            let ns = k;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            let us = k;
            while k < b.len() && b[k].is_ascii_alphabetic() {
                k += 1;
            }
            let n: f64 = text[ns..us]
                .parse()
                .map_err(|_| format!("bad duration {text:?}"))?;
            let unit = match &text[us..k] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                "w" => 604_800.0,
                "y" => 31_536_000.0,
                _ => return Err(format!("bad duration {text:?}")),
            };
            total += n * unit;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(q: &str) -> String {
        rewrite(q, 5_000, 10_000)
            .unwrap()
            .unwrap_or_else(|| q.to_string())
    }

    #[test]
    fn ranges_subqueries_and_offsets() {
        assert_eq!(rw("changes(x[26m+4m])"), "changes(x[1800000ms])");
        assert_eq!(rw("changes(x[2m*(10+5)])"), "changes(x[1800000ms])");
        assert_eq!(rw("x[30m]"), "x[30m]");
        assert_eq!(rw("s(x[29s+1s:20*500ms])"), "s(x[30000ms:10000ms])");
        assert_eq!(rw("x offset (100 + 2)"), "x offset 102000ms");
        assert_eq!(rw("x offset 100 + 2"), "x offset 100 + 2");
        assert_eq!(rw("x offset -step()*2"), "x offset -5000ms*2");
        assert_eq!(
            rw("x offset min_of(step(), 1s)+8000"),
            "x offset 1000ms+8000"
        );
        assert_eq!(rw("x[range()]"), "x[10000ms]");
        assert_eq!(rw("x offset (-2 ^ 2)"), "x offset -4000ms");
        assert_eq!(rw("x[1h30m % 1h]"), "x[1800000ms]");
        assert_eq!(rewrite("x offset range()", 0, 0).unwrap().unwrap(), "x ");
        assert!(rewrite("x[foo(1)]", 0, 0).is_err());
        assert_eq!(rewrite("x{a=\"[1+1]\"}", 0, 0).unwrap(), None);
        // An unterminated bracket (with a multi-byte character) is left to the parser.
        assert_eq!(rewrite("x[1+é", 0, 0).unwrap(), None);
    }
}
