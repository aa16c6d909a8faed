//! A minimal promqltest-style runner for the crate's own tests: `load`,
//! `clear`, `eval instant at`, `eval range from .. to .. step`, expected
//! series and scalars, `expect fail|warn|info|no_warn|no_info|ordered` with
//! optional `msg:`. (The full harness lives elsewhere; this is just enough
//! to write readable test cases.)

#![allow(dead_code)]

use strata_promql::{Engine, EngineOptions, MemStorage, Value};
use strata_tsdb::labels::Labels;

pub fn dur(s: &str) -> i64 {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return v * 1000;
    }
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut total = 0;
    let mut num = String::new();
    let mut unit = String::new();
    let mut flush = |num: &mut String, unit: &mut String| {
        if num.is_empty() {
            return;
        }
        let n: i64 = num.parse().unwrap();
        let m = match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            u => panic!("unit {u}"),
        };
        total += n * m;
        num.clear();
        unit.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !unit.is_empty() {
                flush(&mut num, &mut unit);
            }
            num.push(c);
        } else {
            unit.push(c);
        }
    }
    flush(&mut num, &mut unit);
    if neg {
        -total
    } else {
        total
    }
}

/// Parses `name{a="b", ...}` and returns the labels and the rest of the line.
pub fn metric(s: &str) -> (Labels, &str) {
    let s = s.trim_start();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(s.len());
    if name_end > 0 {
        pairs.push(("__name__".into(), s[..name_end].into()));
    }
    let mut rest = &s[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let close = r.find('}').expect("unclosed brace");
        for part in r[..close].split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (n, v) = part.split_once('=').expect("label pair");
            pairs.push((n.trim().into(), v.trim().trim_matches('"').into()));
        }
        rest = &r[close + 1..];
    }
    (Labels::from_pairs(pairs), rest)
}

fn num(s: &str) -> f64 {
    match s {
        "Inf" | "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        "stale" => strata_promql::value::stale_nan(),
        _ => s.parse().unwrap_or_else(|_| panic!("number {s}")),
    }
}

/// Expands a series description (`1+2x3 _ stale 5x2`); `None` = no sample.
pub fn values(s: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
        } else if let Some(n) = tok.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(None, n.parse().unwrap()));
        } else if let Some(xi) = tok.rfind('x').filter(|&i| i > 0) {
            let (head, n) = (&tok[..xi], tok[xi + 1..].parse::<usize>().unwrap());
            let op = head
                .char_indices()
                .skip(1)
                .filter(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']))
                .map(|(i, _)| i)
                .last();
            let (start, delta) = match op {
                Some(i) => {
                    let d = num(&head[i + 1..]);
                    (num(&head[..i]), if &head[i..=i] == "-" { -d } else { d })
                }
                None => (num(head), 0.0),
            };
            for k in 0..=n {
                out.push(Some(start + delta * k as f64));
            }
        } else {
            out.push(Some(num(tok)));
        }
    }
    out
}

fn eq(a: f64, b: f64) -> bool {
    if strata_promql::value::is_stale_nan(a) || strata_promql::value::is_stale_nan(b) {
        return a.to_bits() == b.to_bits();
    }
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || sum < f64::MIN_POSITIVE {
        return (a - b).abs() < 1e-6 * f64::MIN_POSITIVE;
    }
    (a - b).abs() / sum.min(f64::MAX) < 1e-6
}

pub fn load(st: &mut MemStorage, step: i64, body: &str) {
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (l, rest) = metric(line);
        for (i, v) in values(rest).into_iter().enumerate() {
            if let Some(v) = v {
                st.add_sample(l.clone(), i as i64 * step, v);
            }
        }
    }
}

/// Runs a whole script; panics with every failed eval listed.
pub fn run_script(script: &str) {
    run_script_with(
        script,
        EngineOptions {
            max_samples: 10_000,
            enable_experimental_functions: true,
            ..Default::default()
        },
    );
}

pub fn run_script_with(script: &str, opts: EngineOptions) {
    let engine = Engine::new(opts);
    let mut st = MemStorage::new();
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    let mut failures = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut block = Vec::new();
        while i < lines.len() && !lines[i].is_empty() {
            if !lines[i].starts_with('#') {
                block.push(lines[i]);
            }
            i += 1;
        }
        if line == "clear" {
            st.clear();
        } else if let Some(step) = line.strip_prefix("load ") {
            load(&mut st, dur(step), &block.join("\n"));
        } else if line.starts_with("eval ") {
            if let Err(e) = run_eval(&engine, &st, line, &block) {
                failures.push(format!("{line}: {e}"));
            }
        } else {
            panic!("bad line {line}");
        }
    }
    assert!(
        failures.is_empty(),
        "failed evals:\n{}",
        failures.join("\n")
    );
}

fn run_eval(engine: &Engine, st: &MemStorage, line: &str, block: &[&str]) -> Result<(), String> {
    let (range, at, expr) = if let Some(r) = line.strip_prefix("eval range from ") {
        let (from, r) = r.split_once(" to ").unwrap();
        let (to, r) = r.split_once(" step ").unwrap();
        let (step, expr) = r.split_once(' ').unwrap();
        (Some((dur(from), dur(to), dur(step))), 0, expr)
    } else {
        let r = line.strip_prefix("eval instant at ").unwrap();
        let (at, expr) = r.split_once(' ').unwrap();
        (None, dur(at), expr)
    };
    let mut fail: Option<Option<String>> = None;
    let mut ordered = false;
    let mut annos: Vec<(String, Option<String>)> = Vec::new();
    let mut series: Vec<(Labels, Vec<Option<f64>>)> = Vec::new();
    let mut scalar = None;
    for l in block {
        if let Some(e) = l.strip_prefix("expect ") {
            let (kind, msg) = match e.split_once(" msg:") {
                Some((k, m)) => (k.trim(), Some(m.trim().to_string())),
                None => (e.trim(), None),
            };
            match kind {
                "fail" => fail = Some(msg),
                "ordered" => ordered = true,
                k => annos.push((k.to_string(), msg)),
            }
        } else if l.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == 'N' || c == 'I')
            && !l.contains('{')
        {
            scalar = Some(num(l));
        } else {
            let (m, rest) = metric(l);
            series.push((m, values(rest)));
        }
    }
    let res = match range {
        Some((s, e, step)) => engine.range(st, expr, s, e, step),
        None => engine.instant(st, expr, at),
    };
    let res = match (res, fail) {
        (Err(e), Some(msg)) => {
            return match msg {
                Some(m) if m != e.to_string() => Err(format!("error {e:?}, want {m:?}")),
                _ => Ok(()),
            }
        }
        (Err(e), None) => return Err(format!("unexpected error {e:?}")),
        (Ok(r), Some(_)) => return Err(format!("expected failure, got {:?}", r.value)),
        (Ok(r), None) => r,
    };
    for (kind, got) in [("warn", &res.warnings), ("info", &res.infos)] {
        let want: Vec<&Option<String>> =
            annos.iter().filter(|a| a.0 == kind).map(|a| &a.1).collect();
        if annos.iter().any(|a| a.0 == format!("no_{kind}")) && !got.is_empty() {
            return Err(format!("unexpected {kind}: {got:?}"));
        }
        if !want.is_empty() {
            if got.is_empty() {
                return Err(format!("expected {kind}, got none"));
            }
            for w in want.iter().copied().flatten() {
                if !got.contains(w) {
                    return Err(format!("{kind} {w:?} not in {got:?}"));
                }
            }
        }
    }
    match (&res.value, scalar) {
        (Value::Scalar(_, f), Some(x)) if eq(*f, x) => return Ok(()),
        (v, Some(x)) => return Err(format!("want scalar {x}, got {v:?}")),
        _ => {}
    }
    match &res.value {
        Value::Vector(v) => {
            if v.len() != series.len() {
                return Err(format!("want {} samples, got {v:?}", series.len()));
            }
            for (i, s) in v.iter().enumerate() {
                let pos = series
                    .iter()
                    .position(|(l, _)| *l == s.metric)
                    .ok_or_else(|| format!("unexpected {} {}", s.metric, s.f))?;
                if ordered && pos != i {
                    return Err(format!("{} at position {i}, want {pos}", s.metric));
                }
                let want = series[pos].1[0].unwrap();
                if !eq(want, s.f) {
                    return Err(format!("{}: want {want}, got {}", s.metric, s.f));
                }
            }
        }
        Value::Matrix(m) => {
            let (start, step) = range.map(|r| (r.0, r.2)).unwrap_or((at, 0));
            if m.len()
                != series
                    .iter()
                    .filter(|s| s.1.iter().any(Option::is_some))
                    .count()
            {
                return Err(format!("series count mismatch: got {m:?}"));
            }
            for s in m {
                let (_, vals) = series
                    .iter()
                    .find(|(l, _)| *l == s.metric)
                    .ok_or_else(|| format!("unexpected series {}", s.metric))?;
                let want: Vec<(i64, f64)> = vals
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v)))
                    .collect();
                if want.len() != s.floats.len()
                    || want
                        .iter()
                        .zip(&s.floats)
                        .any(|(a, b)| a.0 != b.0 || !eq(a.1, b.1))
                {
                    return Err(format!("{}: want {want:?}, got {:?}", s.metric, s.floats));
                }
            }
        }
        v => return Err(format!("unexpected value {v:?}")),
    }
    Ok(())
}
