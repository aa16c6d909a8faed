//! JSON bytes as Go's `encoding/json` writes them.
//!
//! Thanos writes `meta.json` with a `json.Encoder` indented by one tab and
//! markers with `json.Marshal`. Both escape `<`, `>`, `&`, U+2028 and U+2029
//! inside strings (Go's HTML-safe default), which serde_json does not; the
//! rest of the output (key order from the struct, `{}` / `[]` for empty
//! containers, `\b` `\f` `\n` `\r` `\t` short escapes) already matches.
//! Writing the same bytes keeps objects written by Strata and by Thanos
//! indistinguishable, so a diff of two buckets shows only real differences.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

/// `json.NewEncoder(w).SetIndent("", "\t").Encode(v)`: tab indentation and a
/// trailing newline.
pub(crate) fn to_vec_indented<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = GoEscape(PrettyFormatter::with_indent(b"\t"));
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing plain data into a Vec only fails for maps with non-string
    // keys, which none of our types have.
    v.serialize(&mut ser)
        .expect("JSON serialization of plain data");
    out.push(b'\n');
    out
}

/// `json.Marshal(v)`: compact, no trailing newline.
pub(crate) fn to_vec_compact<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoEscape(CompactFormatter));
    v.serialize(&mut ser)
        .expect("JSON serialization of plain data");
    out
}

/// Wraps a formatter and adds Go's extra string escapes. Every layout method
/// is forwarded because the wrapped formatter (pretty or compact) decides
/// indentation.
struct GoEscape<F>(F);

impl<F: Formatter> Formatter for GoEscape<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc)?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let v = serde_json::json!({"k": "a<b>&c\u{2028}d\"e\n"});
        assert_eq!(
            String::from_utf8(to_vec_compact(&v)).unwrap(),
            r#"{"k":"a\u003cb\u003e\u0026c\u2028d\"e\n"}"#
        );
    }

    #[test]
    fn indents_with_tabs_and_ends_with_newline() {
        #[derive(Serialize)]
        struct S {
            a: u32,
            b: Vec<u32>,
            c: std::collections::BTreeMap<String, String>,
        }
        let s = S {
            a: 1,
            b: vec![2],
            c: Default::default(),
        };
        assert_eq!(
            String::from_utf8(to_vec_indented(&s)).unwrap(),
            "{\n\t\"a\": 1,\n\t\"b\": [\n\t\t2\n\t],\n\t\"c\": {}\n}\n"
        );
    }
}
