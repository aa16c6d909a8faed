//! The XOR chunk encoding for float samples (`tsdb/chunkenc/xor.go` in
//! Prometheus 2.42), byte-identical to Prometheus.
//!
//! # Layout
//!
//! ```text
//! ┌──────────────────────┬───────────────┬───────────────┬──────────────────────┬─────────────────┐
//! │ num_samples <uint16> │ t_0 <varint>  │ v_0 <float64> │ t_1 - t_0 <uvarint>  │ v_1 <xor value> │
//! ├──────────────────────┴──┬────────────┴────┬──────────┴──────┬───────────────┴─────────────────┤
//! │ t_2 <delta-of-delta>    │ v_2 <xor value> │       ...       │ padding <0-7 bits, + 0/1 byte>  │
//! └─────────────────────────┴─────────────────┴─────────────────┴─────────────────────────────────┘
//! ```
//!
//! - **num_samples**: big-endian `u16`, rewritten after every append. A
//!   reader trusts it and ignores whatever follows the last sample.
//! - **t_0**: zig-zag varint (Go's `binary.PutVarint`), written as whole
//!   bytes. Millisecond timestamps near 2023 take 6 bytes.
//! - **v_0**: the 64 IEEE-754 bits of the value, big-endian. NaN payloads,
//!   including the staleness marker `0x7ff0000000000002`, are kept as is.
//! - **t_1 - t_0**: unsigned varint. Both varints and v_0 are whole bytes, so
//!   the stream is still byte-aligned when t_1 starts.
//! - **Delta of delta** for n ≥ 2, with `dod = (t_n - t_n-1) - (t_n-1 - t_n-2)`:
//!
//!   | dod range (inclusive)       | bits written               |
//!   |-----------------------------|----------------------------|
//!   | 0                           | `0`                        |
//!   | -8191 ..= 8192              | `10` + 14-bit dod          |
//!   | -65535 ..= 65536            | `110` + 17-bit dod         |
//!   | -524287 ..= 524288          | `1110` + 20-bit dod        |
//!   | anything else               | `1111` + 64-bit dod        |
//!
//!   An n-bit field is the low n bits of the two's complement dod. The
//!   ranges are asymmetric so that the decoder can tell the sign: a field
//!   greater than `2^(n-1)` is negative and has `2^n` subtracted. (So -8192
//!   does not fit 14 bits: it would read back as +8192.) The buckets are
//!   wider than Gorilla's because timestamps are milliseconds.
//! - **XOR value** for n ≥ 1, with `x = bits(v_n) ^ bits(v_n-1)`:
//!   - `x == 0`: `0`.
//!   - otherwise `1`, then, with `lead = min(clz(x), 31)` and
//!     `trail = ctz(x)`:
//!     - if a window (`leading`, `trailing`) exists and `lead >= leading`
//!       and `trail >= trailing`: `0`, then the `64 - leading - trailing`
//!       bits `x >> trailing`, reusing the previous window;
//!     - else `1`, 5 bits of `lead`, 6 bits of `sig = 64 - lead - trail`
//!       (64 is written as 0: a zero-length window cannot occur), then the
//!       `sig` bits `x >> trail`; this becomes the new window.
//!
//!   `lead` is clamped to 31 because it has only 5 bits; the window then
//!   just carries a few leading zero bits. The writer starts without a
//!   window (leading = `0xff`), so v_1 always opens one. A reader starts with
//!   a window of (0, 0), which matters only for bytes no writer produced.
//! - **Padding**: zero bits up to the next byte, plus one extra zero byte
//!   when the last write was a whole byte on a byte boundary (see
//!   [`super::bstream`]). A 1-sample chunk is therefore 17 bytes, not 16:
//!   `00 01 | 80 a0 ab fe f9 62 | 40 00 00 00 00 00 00 00 | 00` for
//!   `t = 1700000000000`, `v = 2`.
//!
//! # Decoding speed
//!
//! [`XorIter`] decodes from a 64-bit window loaded at the bit position (see
//! [`super::bstream`]): one load covers a zero dod and a value of up to 54
//! significant bits, the common case for regular scrapes; wider fields take
//! one or two more loads. Truncation is checked once per sample, reads past
//! the end being zeros. Samples 0 and 1 go through a separate, out-of-line
//! path so the loop for the remaining ones carries no varint code.

use super::bstream::{
    put_uvarint, zigzag_encode, BitReader, BitWriter, VarintError, MAX_VARINT_LEN64,
};
use super::ChunkError;

/// Bytes reserved for a new chunk: a 120-sample chunk of a regularly scraped
/// series takes about 100-200 bytes, so this avoids most regrowth.
const INITIAL_CAPACITY: usize = 128;

/// Header size: the big-endian sample count.
const HEADER_LEN: usize = 2;

/// `leading` value meaning "no XOR window yet".
const NO_WINDOW: u8 = 0xff;

/// An appendable XOR chunk.
///
/// Holds the encoded bytes and what the next append needs: the last sample,
/// the last timestamp delta and the current XOR window, so appends never
/// decode the chunk.
#[derive(Clone, Debug)]
pub struct XorChunk {
    w: BitWriter,
    num: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk: the 2-byte header with a count of 0.
    pub fn new() -> Self {
        Self::with_capacity(INITIAL_CAPACITY)
    }

    /// An empty chunk with room for `capacity` bytes before it regrows:
    /// the head sizes a series' next chunk from its previous one, so that
    /// the open chunk does not carry up to half its size in spare capacity.
    pub fn with_capacity(capacity: usize) -> Self {
        XorChunk {
            w: BitWriter::with_prefix(&[0, 0], capacity),
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Reopens encoded chunk bytes for appending, rebuilding the appender
    /// state by decoding them (like Go's `XORChunk.Appender()`).
    ///
    /// As in Go, a reopened 1-sample chunk gets the reader's initial window
    /// (0, 0) instead of "no window", so the next value is written with a
    /// full 64-bit reused window: valid, but not the bytes a chunk appended
    /// without reopening would have.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = XorIter::new(&bytes);
        for _ in it.by_ref() {}
        if let Some(e) = it.err() {
            return Err(e.clone());
        }
        let free = bytes.len() * 8 - it.c.r.pos();
        if free > 8 {
            return Err(ChunkError::Corrupt("bytes after the last sample"));
        }
        // Appends OR bits into the last byte, so its unused bits must be 0.
        if free > 0 && bytes[bytes.len() - 1] & (((1u16 << free) - 1) as u8) != 0 {
            return Err(ChunkError::Corrupt(
                "non-zero padding after the last sample",
            ));
        }
        let (num, c) = (it.total, it.c);
        let (t, t_delta, v, trailing) = (c.t, c.t_delta, c.v, c.trailing);
        let leading = 64 - c.sig - c.trailing;
        let leading = if num == 0 { NO_WINDOW } else { leading };
        Ok(XorChunk {
            w: BitWriter::from_parts(bytes, free as u8),
            num,
            t,
            t_delta,
            v,
            leading,
            trailing,
        })
    }

    /// Appends a sample. The caller guarantees `t` is greater than the
    /// previous timestamp (the head rejects out-of-order samples before
    /// this). `v`'s bits are stored exactly, NaN payloads included.
    ///
    /// # Panics
    ///
    /// If the chunk already holds 65535 samples: the count would wrap. The
    /// head cuts chunks at 120-240 samples, far below that.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(self.num < u16::MAX, "XOR chunk holds 65535 samples");
        let v = v.to_bits();
        let mut buf = [0u8; MAX_VARINT_LEN64];
        let mut t_delta = 0;
        match self.num {
            0 => {
                let n = put_uvarint(&mut buf, zigzag_encode(t));
                for &b in &buf[..n] {
                    self.w.write_byte(b);
                }
                self.w.write_bits(v, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let n = put_uvarint(&mut buf, t_delta);
                for &b in &buf[..n] {
                    self.w.write_byte(b);
                }
                self.write_value(v);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                // Prefix and payload stay separate writes, as in Go: merged,
                // a 14- or 20-bit payload would end on a whole byte and leave
                // a trailing empty byte Go does not (see bstream).
                if dod == 0 {
                    self.w.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64, 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.num += 1;
        self.w.bytes_mut()[..HEADER_LEN].copy_from_slice(&self.num.to_be_bytes());
    }

    fn write_value(&mut self, v: u64) {
        // Go writes the control bits one by one. Runs of writes may be
        // merged only when that keeps "the last write was a multiple of 8
        // bits" unchanged (see bstream); the control bits qualify, the
        // payload must stay a write of its own.
        let x = v ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        if self.leading != NO_WINDOW && lead >= self.leading as u32 && trail >= self.trailing as u32
        {
            self.w.write_bits(0b10, 2);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            self.w.write_bits(x >> self.trailing, sig);
            return;
        }
        self.leading = lead as u8;
        self.trailing = trail as u8;
        let sig = 64 - lead - trail;
        // `11`, 5 bits of lead, 6 bits of sig; a sig of 64 does not fit and
        // is written as 0 (the reader maps 0 back to 64).
        self.w.write_bits(
            (0b11 << 11) | ((lead as u64) << 6) | (sig as u64 & 0x3f),
            13,
        );
        self.w.write_bits(x >> trail, sig);
    }

    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    /// The encoded chunk, exactly as Prometheus stores it.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Consumes the chunk, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_vec()
    }

    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(self.bytes())
    }

    /// Heap memory held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.w.capacity()
    }

    /// Releases spare capacity once the chunk is complete.
    pub fn compact(&mut self) {
        self.w.shrink_to_fit();
    }

    /// Timestamp of the last sample, `None` when empty.
    pub fn last_timestamp(&self) -> Option<i64> {
        (self.num > 0).then_some(self.t)
    }
}

/// Whether `x` fits the `nbits` dod bucket: `-(2^(nbits-1) - 1) ..= 2^(nbits-1)`.
#[inline]
fn bit_range(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Decodes the samples of XOR chunk bytes.
///
/// Yields `(timestamp, value)`; values keep their exact bits. Stops at the
/// sample count in the header, or at the first sample that cannot be decoded,
/// in which case [`XorIter::err`] says why.
#[derive(Clone, Debug)]
pub struct XorIter<'a> {
    c: Cursor<'a>,
    total: u16,
    read: u16,
    err: Option<ChunkError>,
}

/// The decoder state proper. Kept apart from `XorIter` so that the cold
/// paths take and return it by value: a call taking `&mut XorIter` exposes
/// the iterator's address, which keeps more of its fields in memory in the
/// hot loop (about 5% slower in the benchmark).
#[derive(Clone, Copy, Debug)]
struct Cursor<'a> {
    r: BitReader<'a>,
    t: i64,
    t_delta: u64,
    v: u64,
    /// The XOR window as (significant bits, trailing zeros): what decoding
    /// needs, without recomputing `64 - leading - trailing` per sample.
    sig: u8,
    trailing: u8,
}

impl<'a> XorIter<'a> {
    /// `data` is the chunk bytes including the 2-byte sample count.
    pub fn new(data: &'a [u8]) -> Self {
        let (total, err) = match data {
            [a, b, ..] => (u16::from_be_bytes([*a, *b]), None),
            _ => (0, Some(ChunkError::Truncated)),
        };
        XorIter {
            c: Cursor {
                r: BitReader::new(data, HEADER_LEN * 8),
                t: 0,
                t_delta: 0,
                v: 0,
                // Go's reader starts with leading = trailing = 0.
                sig: 64,
                trailing: 0,
            },
            total,
            read: 0,
            err,
        }
    }

    /// The sample count stored in the header.
    pub fn num_samples(&self) -> usize {
        self.total as usize
    }

    /// Advances to the first sample with timestamp `>= t` and returns it.
    ///
    /// Never moves backwards: if the sample returned last (by `next` or
    /// `seek`) already has a timestamp `>= t`, it is returned again, as
    /// Prometheus's `Seek` does; the following `next` continues after it.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        if self.err.is_some() {
            return None;
        }
        if self.read > 0 && self.c.t >= t {
            return Some((self.c.t, f64::from_bits(self.c.v)));
        }
        self.find(|&(ts, _)| ts >= t)
    }

    /// Why decoding stopped early, if it did.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    #[inline]
    fn fail(&mut self, e: ChunkError) -> Option<(i64, f64)> {
        cold();
        self.err = Some(e);
        // Makes the hot-path condition in `next` false from now on.
        self.total = self.read;
        None
    }

    /// Samples 0 and 1, and the end of the chunk.
    #[inline]
    fn next_first(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.total {
            return None;
        }
        match Cursor::first_samples(self.c, self.read) {
            Ok(c) => {
                self.c = c;
                self.read += 1;
                Some((c.t, f64::from_bits(c.v)))
            }
            Err(e) => self.fail(e),
        }
    }
}

impl<'a> Cursor<'a> {
    /// Decodes sample 0 or 1, which start with byte-aligned varints.
    #[cold]
    #[inline(never)]
    fn first_samples(mut c: Cursor<'a>, read: u16) -> Result<Cursor<'a>, ChunkError> {
        if read == 0 {
            c.t = c.r.read_varint().map_err(varint_error)?;
            c.v = c.r.read_bits(64);
        } else {
            c.t_delta = c.r.read_uvarint().map_err(varint_error)?;
            c.t = c.t.wrapping_add(c.t_delta as i64);
            c.read_value().map_err(|e| c.value_error(e))?;
        }
        if c.r.overrun() {
            return Err(ChunkError::Truncated);
        }
        Ok(c)
    }

    /// Garbage read from past the end means truncation, not corruption.
    #[cold]
    fn value_error(&self, e: ChunkError) -> ChunkError {
        if self.r.overrun() {
            ChunkError::Truncated
        } else {
            e
        }
    }

    /// Decodes a non-zero delta of delta from `w`, the peeked bits.
    ///
    /// Branches, not arithmetic selects: the branches are well predicted
    /// for regular scrapes and let the CPU run ahead to the next sample's
    /// bits, where a branch-free version serialises on every width (it
    /// measured 3-4x slower).
    #[inline(always)]
    fn read_dod_nonzero(&mut self, w: u64) -> i64 {
        let (prefix, nbits) = match w >> 60 {
            0b1000..=0b1011 => (2, 14),
            0b1100 | 0b1101 => (3, 17),
            0b1110 => (4, 20),
            _ => {
                self.r.skip(4);
                return self.r.read_bits(64) as i64;
            }
        };
        let field = (w << prefix) >> (64 - nbits);
        self.r.skip((prefix + nbits) as usize);
        // Fields above 2^(nbits-1) are negative (see the module docs).
        if field > 1 << (nbits - 1) {
            field.wrapping_sub(1 << nbits) as i64
        } else {
            field as i64
        }
    }

    #[inline(always)]
    fn read_value(&mut self) -> Result<(), ChunkError> {
        let w = self.r.peek();
        self.read_value_from::<57>(w)
    }

    /// Decodes an XOR value from `w`, the next bits of the stream, of which
    /// the top `VALID` are stream bits. Payloads that fit are taken from
    /// `w`; only wider ones load again.
    #[inline(always)]
    fn read_value_from<const VALID: u32>(&mut self, w: u64) -> Result<(), ChunkError> {
        if w >> 63 == 0 {
            self.r.skip(1);
            return Ok(());
        }
        if w & (1 << 62) == 0 {
            // Reused window; `sig` is 1..=64 (see the check below).
            let sig = self.sig as u32;
            let x = if 2 + sig <= VALID {
                self.r.skip(2 + sig as usize);
                (w << 2) >> (64 - sig)
            } else {
                self.r.skip(2);
                self.r.read_bits(sig)
            };
            self.v ^= x << self.trailing;
            return Ok(());
        }
        let lead = ((w >> 57) & 0x1f) as u32;
        let sig = match ((w >> 51) & 0x3f) as u32 {
            0 => 64,
            s => s,
        };
        if lead + sig > 64 {
            // Skipped so that a stream cut inside these fields counts as
            // truncated rather than corrupt.
            self.r.skip(13);
            return Err(ChunkError::Corrupt("XOR window wider than 64 bits"));
        }
        let trail = 64 - lead - sig;
        self.sig = sig as u8;
        self.trailing = trail as u8;
        let x = if 13 + sig <= VALID {
            self.r.skip(13 + sig as usize);
            (w << 13) >> (64 - sig)
        } else {
            self.r.skip(13);
            self.r.read_bits(sig)
        };
        self.v ^= x << trail;
        Ok(())
    }
}

/// Marks the path that calls it as unlikely.
#[cold]
#[inline(never)]
fn cold() {}

fn varint_error(e: VarintError) -> ChunkError {
    match e {
        VarintError::Eof => ChunkError::Truncated,
        VarintError::Overflow => ChunkError::VarintOverflow,
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read < 2 || self.read >= self.total {
            return self.next_first();
        }
        let c = &mut self.c;
        let w = c.r.peek();
        let res = if w >> 63 == 0 {
            // dod 0, the common case for regular scrapes: the value's bits
            // follow in the same load.
            c.r.skip(1);
            c.t = c.t.wrapping_add(c.t_delta as i64);
            c.read_value_from::<56>(w << 1)
        } else {
            let dod = c.read_dod_nonzero(w);
            c.t_delta = c.t_delta.wrapping_add(dod as u64);
            c.t = c.t.wrapping_add(c.t_delta as i64);
            c.read_value()
        };
        if let Err(e) = res {
            let e = c.value_error(e);
            return self.fail(e);
        }
        if c.r.overrun() {
            return self.fail(ChunkError::Truncated);
        }
        let sample = (c.t, f64::from_bits(c.v));
        self.read += 1;
        Some(sample)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total.saturating_sub(self.read) as usize;
        (0, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        c
    }

    fn decode_bits(data: &[u8]) -> (Vec<(i64, u64)>, Option<ChunkError>) {
        let mut it = XorIter::new(data);
        let out = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        (out, it.err().cloned())
    }

    fn assert_round_trip(samples: &[(i64, f64)]) {
        let c = encode(samples);
        let (got, err) = decode_bits(c.bytes());
        assert_eq!(err, None);
        let want: Vec<_> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert_eq!(c.num_samples(), samples.len());
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn empty_chunk() {
        let c = XorChunk::new();
        assert_eq!(c.bytes(), &[0, 0]);
        assert_eq!(c.num_samples(), 0);
        assert_eq!(c.iter().next(), None);
        assert_eq!(c.iter().err(), None);
        assert_eq!(c.last_timestamp(), None);
    }

    #[test]
    fn one_sample_chunk_is_17_bytes_like_prometheus() {
        // Observed in a promtool-written block (reference section 1.4).
        let c = encode(&[(1_700_000_000_000, 2.0)]);
        assert_eq!(
            c.bytes(),
            hex("0001 80a0abfef962 4000000000000000 00").as_slice()
        );
        assert_eq!(c.bytes().len(), 17);
        assert_round_trip(&[(1_700_000_000_000, 2.0)]);
    }

    #[test]
    fn three_sample_chunk_matches_reference_bits() {
        // Values 1, 5, 9 at Δt 15000 then 15500 (dod 500); the bits after the
        // first delta are from the reference's decode of a Prometheus chunk.
        let t0 = 1_700_000_000_000;
        let s = [(t0, 1.0), (t0 + 15_000, 5.0), (t0 + 30_500, 9.0)];
        let c = encode(&s);
        let want = hex("0003 80a0abfef962 3ff0000000000000 9875 c26ffe607d350bb0");
        assert_eq!(c.bytes(), want.as_slice());
        assert_round_trip(&s);
    }

    #[test]
    fn dod_bucket_boundaries() {
        // (dod, bits used by the dod field incl. prefix)
        let cases: &[(i64, usize)] = &[
            (0, 1),
            (1, 16),
            (-1, 16),
            (-8191, 16),
            (8192, 16),
            (-8192, 20),
            (8193, 20),
            (-65535, 20),
            (65536, 20),
            (-65536, 24),
            (65537, 24),
            (-524287, 24),
            (524288, 24),
            (-524288, 68),
            (524289, 68),
            (1 << 40, 68),
            (-(1 << 40), 68),
        ];
        for &(dod, bits) in cases {
            // Large first delta so that t stays increasing for negative dods.
            let d0 = 1i64 << 41;
            let t0 = -5_000_000_000_000i64;
            let s = [(t0, 1.0), (t0 + d0, 1.0), (t0 + 2 * d0 + dod, 1.0)];
            assert_round_trip(&s);
            // Bits: the dod, then one `0` for the unchanged value.
            let before = encode(&s[..2]);
            let after = encode(&s);
            let used_before = (before.bytes().len() - 1) * 8 + 1; // the value-0 bit of sample 1
            let used_after = used_before + bits + 1;
            assert_eq!(after.bytes().len(), used_after.div_ceil(8), "dod {dod}");
        }
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        assert_round_trip(&[
            (i64::MIN, 1.0),
            (i64::MIN + 1, 2.0),
            (-1, 3.0),
            (i64::MAX, 4.0),
        ]);
        assert_round_trip(&[
            (-1_000, 0.5),
            (-500, 0.5),
            (0, 0.5),
            (500, 0.25),
            (1_000_000_000, 0.0),
        ]);
        assert_round_trip(&[(0, 1.0), (i64::MAX, 1.0)]);
    }

    #[test]
    fn special_values_round_trip_bit_exact() {
        let vals = [
            f64::from_bits(STALE_NAN),
            f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0001), // Go's math.NaN()
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            -1.000_000_000_000_000_2,
            1.000_000_000_000_000_2,
            f64::from_bits(STALE_NAN),
        ];
        let s: Vec<_> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000, v))
            .collect();
        assert_round_trip(&s);
    }

    #[test]
    fn sixty_four_significant_bits() {
        // x = 0x8000000000000001: lead 0, trail 0, sig 64 stored as 0.
        let a = 1.0f64;
        let b = f64::from_bits(a.to_bits() ^ 0x8000_0000_0000_0001);
        assert_round_trip(&[(0, a), (1, b), (2, a), (3, b)]);
        // Leading zeros above 31 are clamped.
        let c = f64::from_bits(a.to_bits() ^ 1);
        assert_round_trip(&[(0, a), (1, c), (2, a), (3, c), (4, b)]);
    }

    #[test]
    fn seek_semantics() {
        let s: Vec<_> = (0..10).map(|i| (i * 10, i as f64)).collect();
        let c = encode(&s);
        let mut it = c.iter();
        assert_eq!(it.seek(-5), Some((0, 0.0)));
        assert_eq!(it.seek(0), Some((0, 0.0)));
        assert_eq!(it.seek(25), Some((30, 3.0)));
        // Never goes backwards; returns the current sample again.
        assert_eq!(it.seek(10), Some((30, 3.0)));
        assert_eq!(it.seek(30), Some((30, 3.0)));
        assert_eq!(it.next(), Some((40, 4.0)));
        assert_eq!(it.seek(90), Some((90, 9.0)));
        assert_eq!(it.next(), None);
        assert_eq!(it.seek(91), None);
        assert_eq!(c.iter().seek(1000), None);
        assert_eq!(XorChunk::new().iter().seek(i64::MIN), None);
        assert_eq!(c.iter().err(), None);
    }

    #[test]
    fn truncation_is_reported() {
        let s: Vec<_> = (0..50)
            .map(|i| (1_000 * i + (i * i) % 7, (i as f64).sqrt()))
            .collect();
        let c = encode(&s);
        let full = c.bytes();
        // The padding byte(s) can go without losing data; anything more cannot.
        for cut in 0..full.len() {
            let (got, err) = decode_bits(&full[..cut]);
            if got.len() < s.len() {
                assert_eq!(err, Some(ChunkError::Truncated), "cut at {cut}");
            }
            for (g, w) in got.iter().zip(&s) {
                assert_eq!(*g, (w.0, w.1.to_bits()));
            }
        }
        assert_eq!(decode_bits(&[]).1, Some(ChunkError::Truncated));
        assert_eq!(decode_bits(&[0]).1, Some(ChunkError::Truncated));
        // A count larger than the data.
        let mut more = full.to_vec();
        more[0..2].copy_from_slice(&1000u16.to_be_bytes());
        let (got, err) = decode_bits(&more);
        assert!(got.len() >= s.len());
        assert_eq!(err, Some(ChunkError::Truncated));
    }

    #[test]
    fn corrupt_window_is_reported() {
        // Sample 1 with a new window: lead 31, sig 63.
        let mut w = BitWriter::with_prefix(&[0, 2], 32);
        w.write_byte(0); // t0 = 0
        w.write_bits(0, 64);
        w.write_byte(1); // delta 1
        w.write_bits(0b11, 2);
        w.write_bits(31, 5);
        w.write_bits(63, 6);
        w.write_bits(u64::MAX, 63);
        let (got, err) = decode_bits(w.bytes());
        assert_eq!(got.len(), 1);
        assert!(matches!(err, Some(ChunkError::Corrupt(_))));
    }

    #[test]
    fn varint_overflow_is_reported() {
        let mut data = vec![0, 1];
        data.extend_from_slice(&[0xff; 11]);
        data.extend_from_slice(&[0; 8]);
        assert_eq!(decode_bits(&data).1, Some(ChunkError::VarintOverflow));
    }

    #[test]
    fn from_bytes_continues_appending_identically() {
        let s: Vec<_> = (0..40)
            .map(|i| (i * 15_000 + (i % 3), (i * i) as f64 / 3.0))
            .collect();
        let whole = encode(&s);
        for split in 2..s.len() {
            let mut c = XorChunk::from_bytes(encode(&s[..split]).into_bytes()).unwrap();
            for &(t, v) in &s[split..] {
                c.append(t, v);
            }
            assert_eq!(c.bytes(), whole.bytes(), "split {split}");
        }
        let mut c = XorChunk::from_bytes(vec![0, 0]).unwrap();
        for &(t, v) in &s {
            c.append(t, v);
        }
        assert_eq!(c.bytes(), whole.bytes());
        assert!(XorChunk::from_bytes(vec![0, 0, 0]).is_ok());
        assert!(XorChunk::from_bytes(vec![0, 0, 0, 0]).is_err());
        assert!(XorChunk::from_bytes(vec![0, 0, 1]).is_err());
        assert!(XorChunk::from_bytes(vec![0]).is_err());
    }

    #[test]
    fn typical_chunk_size() {
        let s: Vec<_> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (i * 3) as f64))
            .collect();
        let c = encode(&s);
        assert!(c.bytes().len() < 200, "{}", c.bytes().len());
        assert!(c.heap_bytes() >= c.bytes().len());
        assert_round_trip(&s);
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::NAN),
            Just(f64::from_bits(STALE_NAN)),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            (0u32..1000).prop_map(|x| x as f64),
            (-1e6f64..1e6).prop_map(|x| (x * 100.0).round() / 100.0),
        ]
    }

    fn any_samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        let step = prop_oneof![
            Just(15_000u64),
            1u64..100,
            14_000u64..16_000,
            1u64..1 << 21,
            1u64..1 << 40,
            Just(u64::MAX / 300),
        ];
        (
            any::<i64>(),
            prop::collection::vec((step, any_f64()), 0..300),
        )
            .prop_map(|(t0, steps)| {
                let mut t = t0 / 2;
                let mut out = Vec::with_capacity(steps.len());
                for (d, v) in steps {
                    out.push((t, v));
                    match t.checked_add(d as i64) {
                        Some(next) => t = next,
                        None => break,
                    }
                }
                out
            })
    }

    proptest! {
        #[test]
        fn prop_round_trip(samples in any_samples()) {
            let c = encode(&samples);
            let (got, err) = decode_bits(c.bytes());
            prop_assert_eq!(err, None);
            let want: Vec<_> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            prop_assert_eq!(got, want);
            // Reopening reproduces the appender state.
            let re = XorChunk::from_bytes(c.bytes().to_vec());
            prop_assert!(re.is_ok());
        }

        #[test]
        fn prop_random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400), seek in any::<i64>()) {
            let mut it = XorIter::new(&data);
            let n = it.by_ref().count();
            prop_assert!(n <= u16::MAX as usize);
            let mut it = XorIter::new(&data);
            let _ = it.seek(seek);
            let _ = it.next();
            let _ = XorChunk::from_bytes(data);
        }

        #[test]
        fn prop_truncated_and_flipped_never_panic(
            samples in any_samples(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let c = encode(&samples);
            let bytes = c.bytes();
            let cut = cut.index(bytes.len() + 1);
            let (got, err) = decode_bits(&bytes[..cut]);
            prop_assert!(got.len() == samples.len() || err.is_some());
            let mut flipped = bytes.to_vec();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            let _ = decode_bits(&flipped);
        }
    }
}
