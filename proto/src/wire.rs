//! A protobuf wire-format reader over a byte slice, for the hot decoders
//! that walk messages in place instead of building prost's owned types.
//!
//! prost decodes every `string` field into its own `String`; on the paths
//! that carry one label set per series (remote-write bodies arriving at the
//! TSDB, StoreAPI `Series` frames arriving at the querier) those
//! allocations dominate decoding, and the strings are copied once more into
//! the receiver's label type anyway. [`Reader`] gives the decoders the wire
//! primitives (varints, keys, length-delimited payloads, skipping unknown
//! fields) so they can borrow or intern instead.
//!
//! The wire format, as the decoders rely on it
//! (<https://protobuf.dev/programming-guides/encoding/>):
//! - a field is a key varint `(field_number << 3) | wire_type` and a value;
//! - wire type 0 is a varint (at most 10 bytes, 7 bits each, little end
//!   first), 1 is 8 little-endian bytes, 2 is a varint length and that many
//!   bytes (strings, bytes, embedded messages, packed repeated), 5 is 4
//!   little-endian bytes; 3 and 4 (groups) are not used by any message here
//!   and are an error;
//! - fields may come in any order and repeat; a decoder must skip field
//!   numbers it does not know.
//!
//! Every malformed input (a truncated varint or payload, a length past the
//! end, a group) is a [`WireError`], never a panic.

use std::fmt;

/// Why bytes are not a valid protobuf message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// Reads protobuf fields from the front of a byte slice.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    /// What is left to read.
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over a whole message.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A varint (wire type 0).
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut n = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            n |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(n);
            }
        }
        Err(WireError("truncated or overlong varint"))
    }

    /// The next field's number and wire type.
    pub fn key(&mut self) -> Result<(u64, u8), WireError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    /// A length-delimited payload (wire type 2).
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError("length overflows"))?;
        if len > self.buf.len() {
            return Err(WireError("length past the end of the message"));
        }
        let (b, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(b)
    }

    /// A `string` payload, which protobuf requires to be UTF-8.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError("string is not UTF-8"))
    }

    /// Eight little-endian bytes (wire type 1).
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        if self.buf.len() < 8 {
            return Err(WireError("truncated fixed64"));
        }
        let (b, rest) = self.buf.split_at(8);
        self.buf = rest;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    /// Skips a field of `wire` type (its key already read).
    pub fn skip(&mut self, wire: u8) -> Result<(), WireError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.fixed64().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => {
                if self.buf.len() < 4 {
                    return Err(WireError("truncated fixed32"));
                }
                self.buf = &self.buf[4..];
                Ok(())
            }
            _ => Err(WireError("unsupported wire type (groups)")),
        }
    }
}

/// Appends `n` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_truncation_is_an_error() {
        for n in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, n);
            let mut r = Reader::new(&b);
            assert_eq!(r.varint(), Ok(n));
            assert!(r.is_empty());
            assert!(Reader::new(&b[..b.len() - 1]).varint().is_err());
        }
        // Eleven continuation bytes: overlong.
        assert!(Reader::new(&[0x80; 11]).varint().is_err());
    }

    #[test]
    fn lengths_past_the_end_and_groups_are_errors() {
        assert!(Reader::new(&[5, b'a', b'b']).bytes().is_err());
        assert_eq!(Reader::new(&[2, b'a', b'b']).str(), Ok("ab"));
        assert!(Reader::new(&[1, 0xff]).str().is_err());
        assert!(Reader::new(&[]).skip(3).is_err());
        assert!(Reader::new(&[1, 2, 3]).skip(5).is_err());
        assert!(Reader::new(&[1, 2, 3]).fixed64().is_err());
    }
}
