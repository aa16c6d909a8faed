//! Go-compatible integer encodings used by every Prometheus file format.
//!
//! `uvarint` is Go's `binary.PutUvarint` (LEB128); `varint` is Go's zig-zag
//! `binary.PutVarint`. Fixed-width integers are big-endian. [`Decoder`] reads
//! them from a byte slice without ever panicking: a short or malformed input
//! sets an error and every later read returns zero, so parsing code can read a
//! whole record and check [`Decoder::err`] once (the `Decbuf` pattern of
//! Prometheus's `tsdb/encoding`).

pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

pub fn uvarint_len(mut x: u64) -> usize {
    let mut n = 1;
    while x >= 0x80 {
        x >>= 7;
        n += 1;
    }
    n
}

/// Why a decode failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unexpected end of data")]
    Eof,
    #[error("varint overflows 64 bits")]
    Overflow,
    #[error("invalid UTF-8 string")]
    Utf8,
}

/// A cursor over bytes that records the first error instead of panicking.
pub struct Decoder<'a> {
    buf: &'a [u8],
    err: Option<DecodeError>,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, err: None }
    }

    pub fn err(&self) -> Option<DecodeError> {
        self.err
    }

    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn fail(&mut self, e: DecodeError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
        self.buf = &[];
    }

    pub fn uvarint(&mut self) -> u64 {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for (i, &b) in self.buf.iter().enumerate() {
            if i == 10 || (i == 9 && b > 1) {
                self.fail(DecodeError::Overflow);
                return 0;
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return x;
            }
            shift += 7;
        }
        self.fail(DecodeError::Eof);
        0
    }

    pub fn varint(&mut self) -> i64 {
        let u = self.uvarint();
        ((u >> 1) as i64) ^ -((u & 1) as i64)
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        if self.buf.len() < n {
            self.fail(DecodeError::Eof);
            return &[];
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        h
    }

    pub fn byte(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn be32(&mut self) -> u32 {
        let b = self.bytes(4);
        if b.len() == 4 {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            0
        }
    }

    pub fn be64(&mut self) -> u64 {
        let b = self.bytes(8);
        match <[u8; 8]>::try_from(b) {
            Ok(a) => u64::from_be_bytes(a),
            Err(_) => 0,
        }
    }

    /// A uvarint length followed by that many UTF-8 bytes.
    pub fn uvarint_str(&mut self) -> &'a str {
        let n = self.uvarint();
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let b = self.bytes(n);
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(_) => {
                self.fail(DecodeError::Utf8);
                ""
            }
        }
    }
}

pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for x in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            i64::MAX,
            i64::MIN,
            1_700_000_000_000,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, x);
            let mut d = Decoder::new(&b);
            assert_eq!(d.varint(), x);
            assert!(d.err().is_none() && d.is_empty());
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, u64::MAX);
        assert_eq!(b.len(), 10);
        assert_eq!(uvarint_len(u64::MAX), 10);
        assert_eq!(Decoder::new(&b).uvarint(), u64::MAX);
    }

    #[test]
    fn short_and_overlong_input_is_an_error_not_a_panic() {
        let mut d = Decoder::new(&[0x80, 0x80]);
        assert_eq!(d.uvarint(), 0);
        assert_eq!(d.err(), Some(DecodeError::Eof));
        let mut d = Decoder::new(&[0xff; 11]);
        d.uvarint();
        assert_eq!(d.err(), Some(DecodeError::Overflow));
        let mut d = Decoder::new(&[5, b'a']);
        assert_eq!(d.uvarint_str(), "");
        assert_eq!(d.err(), Some(DecodeError::Eof));
        assert_eq!(d.be64(), 0);
    }
}
