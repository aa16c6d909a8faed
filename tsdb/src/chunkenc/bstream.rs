//! Bit streams: the big-endian, most-significant-bit-first bit packing under
//! every chunk encoding.
//!
//! # Layout
//!
//! Bits are packed into bytes from the most significant bit down, so the bit
//! string `1 0 1` written into an empty stream gives the byte `0b1010_0000`.
//! Multi-bit values are written most significant bit first. A stream ends
//! with 0 to 7 zero bits of padding to the next byte boundary, plus (see
//! below) sometimes one extra zero byte.
//!
//! # The trailing zero byte
//!
//! Prometheus's `bstream.writeByte` always appends a fresh byte after it has
//! written eight bits, even when those eight bits ended exactly on a byte
//! boundary. The stream then ends with a whole zero byte that holds no data.
//! A later single-bit write fills that byte, so the extra byte exists only
//! while the last write was a whole-byte one. Chunk bytes, and hence the
//! length field and CRC of every chunk record, depend on this, so
//! `BitWriter` reproduces it exactly: the stream length is always
//! `(bits_written + free) / 8`, where `free` (0..=8) is the number of unused
//! bits in the last byte.
//!
//! # Reading
//!
//! `BitReader` reads at a bit position with one unaligned 8-byte load, so
//! every read of up to 56 bits costs a load, a byte swap and two shifts, with
//! no per-bit loop. Bits past the end of the data read as zero; callers detect
//! truncation by comparing `BitReader::pos` with `BitReader::end` once per
//! decoded sample instead of on every read, which keeps the hot loop free of
//! error paths while never touching memory out of bounds.

/// Appends bits to a byte vector exactly as Prometheus's `bstream` does.
#[derive(Clone, Debug)]
pub(crate) struct BitWriter {
    stream: Vec<u8>,
    /// Unused low bits of the last byte, 0..=8. 8 means the last byte is the
    /// empty byte appended by a whole-byte write (see the module docs).
    free: u8,
}

impl BitWriter {
    /// A stream that starts with `prefix` (for chunks: the sample-count
    /// header), with no free bits in its last byte.
    pub(crate) fn with_prefix(prefix: &[u8], capacity: usize) -> Self {
        let mut stream = Vec::with_capacity(capacity.max(prefix.len()));
        stream.extend_from_slice(prefix);
        BitWriter { stream, free: 0 }
    }

    /// Continues a stream whose last byte has `free` unused bits.
    pub(crate) fn from_parts(stream: Vec<u8>, free: u8) -> Self {
        debug_assert!(free <= 8 && (free == 0 || !stream.is_empty()));
        BitWriter { stream, free }
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.stream
    }

    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.stream
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.stream
    }

    pub(crate) fn capacity(&self) -> usize {
        self.stream.capacity()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.stream.shrink_to_fit();
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1);
    }

    /// Writes the low `nbits` (0..=64) bits of `value`, most significant first.
    ///
    /// Equivalent to Go's `writeBits`, which writes whole bytes with
    /// `writeByte` and then the remaining bits one by one; so a write of a
    /// positive multiple of 8 bits leaves the trailing empty byte behind.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        // Fast path, inlined: 1 to 7 bits that fit in the last byte.
        if nbits.wrapping_sub(1) < 7 && nbits <= self.free as u32 {
            if let Some(last) = self.stream.last_mut() {
                let value = value & ((1u64 << nbits) - 1);
                *last |= (value as u8) << (self.free as u32 - nbits);
                self.free -= nbits as u8;
                return;
            }
        }
        self.write_bits_slow(value, nbits);
    }

    #[inline(never)]
    fn write_bits_slow(&mut self, value: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        // Bits above nbits must not leak in (e.g. sign bits of a negative dod).
        let value = if nbits == 64 {
            value
        } else {
            value & ((1u64 << nbits) - 1)
        };
        // Take the partly written last byte back out (the empty byte left by
        // a whole-byte write is dropped), append it and the new bits as one
        // big-endian word, and cut the vector to the bytes actually used.
        // One fixed-size copy instead of a push per byte.
        let (partial, used) = match self.free {
            0 => (0u8, 0u32),
            8 => {
                self.stream.pop();
                (0, 0)
            }
            f => (self.stream.pop().unwrap_or(0), 8 - f as u32),
        };
        let total = used + nbits; // 1..=71
        let len = self.stream.len() + total.div_ceil(8) as usize;
        if total <= 64 {
            let word = ((partial as u64) << 56) | (value << (64 - total));
            self.stream.extend_from_slice(&word.to_be_bytes());
        } else {
            let word = ((partial as u128) << 120) | ((value as u128) << (128 - total));
            self.stream.extend_from_slice(&word.to_be_bytes());
        }
        self.stream.truncate(len);
        self.free = (total.div_ceil(8) * 8 - total) as u8;

        if nbits.is_multiple_of(8) && self.free == 0 {
            self.stream.push(0);
            self.free = 8;
        }
    }

    /// Go's `writeByte`: eight bits, leaving the trailing empty byte when
    /// they end on a byte boundary.
    #[inline]
    pub(crate) fn write_byte(&mut self, b: u8) {
        self.write_bits(b as u64, 8);
    }
}

/// Reads bits from a byte slice at an arbitrary bit position.
///
/// Never panics and never reads out of bounds: past the end of the slice the
/// stream reads as zero bits, and `overrun` reports it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next bit to read, counted from the first bit of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    #[inline]
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader { data, pos }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Number of bits in the data.
    #[inline]
    pub(crate) fn end(&self) -> usize {
        self.data.len() * 8
    }

    /// True when reads have gone past the last bit of the data, i.e. some
    /// returned bits were invented zeros.
    #[inline]
    pub(crate) fn overrun(&self) -> bool {
        self.pos > self.end()
    }

    /// The next 64 bits without consuming them, left-aligned. At least the
    /// top 57 are stream bits (or zero past the end); the rest are zero.
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        let byte = self.pos >> 3;
        let shift = (self.pos & 7) as u32;
        match self.data.get(byte..byte + 8) {
            Some(b) => {
                let word = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                word << shift
            }
            None => peek_tail(self.data, byte, shift),
        }
    }

    #[inline(always)]
    pub(crate) fn skip(&mut self, nbits: usize) {
        self.pos += nbits;
    }

    /// Reads `nbits` bits, 1..=56, right-aligned.
    #[inline(always)]
    pub(crate) fn read_short(&mut self, nbits: u32) -> u64 {
        debug_assert!((1..=56).contains(&nbits));
        let v = self.peek() >> (64 - nbits);
        self.pos += nbits as usize;
        v
    }

    /// Reads `nbits` bits, 0..=64, right-aligned.
    #[inline(always)]
    pub(crate) fn read_bits(&mut self, nbits: u32) -> u64 {
        if nbits == 0 {
            0
        } else if nbits <= 56 {
            self.read_short(nbits)
        } else {
            let hi = self.read_short(32);
            let lo = self.read_short(nbits - 32);
            (hi << (nbits - 32)) | lo
        }
    }

    /// Reads whole bytes for a varint. Only valid on a byte boundary; returns
    /// `None` past the end of the data.
    #[inline]
    fn read_byte_aligned(&mut self) -> Option<u8> {
        debug_assert!(self.pos.is_multiple_of(8));
        let b = *self.data.get(self.pos >> 3)?;
        self.pos += 8;
        Some(b)
    }

    /// Reads an unsigned LEB128 varint as Go's `binary.ReadUvarint` does:
    /// at most 10 bytes, and the 10th may only be 0 or 1.
    pub(crate) fn read_uvarint(&mut self) -> Result<u64, VarintError> {
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN64 {
            let b = self.read_byte_aligned().ok_or(VarintError::Eof)?;
            if b < 0x80 {
                if i == MAX_VARINT_LEN64 - 1 && b > 1 {
                    return Err(VarintError::Overflow);
                }
                return Ok(x | (b as u64) << shift);
            }
            x |= ((b & 0x7f) as u64) << shift;
            shift += 7;
        }
        Err(VarintError::Overflow)
    }

    /// Reads a zig-zag signed varint (Go's `binary.ReadVarint`).
    pub(crate) fn read_varint(&mut self) -> Result<i64, VarintError> {
        let ux = self.read_uvarint()?;
        Ok(zigzag_decode(ux))
    }
}

/// `peek` for the last 7 bytes of the stream and beyond, which is reached
/// once per chunk; kept out of line so the fast path stays small, and a free
/// function so that the reader's address does not escape the decode loop.
#[cold]
#[inline(never)]
fn peek_tail(data: &[u8], byte: usize, shift: u32) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(rest) = data.get(byte..) {
        let n = rest.len().min(8);
        buf[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(buf) << shift
}

pub(crate) const MAX_VARINT_LEN64: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    Eof,
    Overflow,
}

#[inline]
pub(crate) fn zigzag_encode(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
pub(crate) fn zigzag_decode(ux: u64) -> i64 {
    let x = (ux >> 1) as i64;
    if ux & 1 != 0 {
        !x
    } else {
        x
    }
}

/// Writes `x` as an unsigned LEB128 varint into `buf`, returns the length.
#[inline]
pub(crate) fn put_uvarint(buf: &mut [u8; MAX_VARINT_LEN64], mut x: u64) -> usize {
    let mut i = 0;
    while x >= 0x80 {
        buf[i] = x as u8 | 0x80;
        x >>= 7;
        i += 1;
    }
    buf[i] = x as u8;
    i + 1
}

/// Decodes an unsigned varint at the start of `buf` like Go's
/// `binary.Uvarint`: `None` when `buf` ends inside it or it overflows 64 bits.
/// Returns the value and its length in bytes.
pub(crate) fn uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    let mut shift = 0u32;
    for (i, &b) in buf.iter().take(MAX_VARINT_LEN64).enumerate() {
        if b < 0x80 {
            if i == MAX_VARINT_LEN64 - 1 && b > 1 {
                return None;
            }
            return Some((x | (b as u64) << shift, i + 1));
        }
        x |= ((b & 0x7f) as u64) << shift;
        shift += 7;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_msb_first() {
        let mut w = BitWriter::with_prefix(&[], 8);
        w.write_bit(true);
        w.write_bit(false);
        w.write_bit(true);
        assert_eq!(w.bytes(), &[0b1010_0000]);
        w.write_bits(0b11111, 5);
        assert_eq!(w.bytes(), &[0b1011_1111]);
        w.write_bits(0b1, 1);
        assert_eq!(w.bytes(), &[0b1011_1111, 0b1000_0000]);
    }

    #[test]
    fn whole_byte_writes_leave_an_empty_trailing_byte() {
        // Aligned byte: Go appends a fresh zero byte after it.
        let mut w = BitWriter::with_prefix(&[0, 0], 8);
        w.write_byte(0xab);
        assert_eq!(w.bytes(), &[0, 0, 0xab, 0]);
        // The next bit goes into that byte rather than a new one.
        w.write_bit(true);
        assert_eq!(w.bytes(), &[0, 0, 0xab, 0x80]);
        // Unaligned byte: spills into a new byte, no extra byte.
        w.write_byte(0xff);
        assert_eq!(w.bytes(), &[0, 0, 0xab, 0xff, 0x80]);
        // 64 bits on a boundary behave like 8 aligned bytes.
        let mut w = BitWriter::with_prefix(&[], 8);
        w.write_bits(u64::MAX, 64);
        assert_eq!(w.bytes().len(), 9);
        assert_eq!(w.bytes()[8], 0);
        // 12 bits ends with single-bit writes: no extra byte.
        let mut w = BitWriter::with_prefix(&[], 8);
        w.write_bits(0xfff, 12);
        assert_eq!(w.bytes(), &[0xff, 0xf0]);
    }

    #[test]
    fn write_bits_masks_high_bits() {
        let mut w = BitWriter::with_prefix(&[], 8);
        w.write_bits(-1i64 as u64, 3);
        assert_eq!(w.bytes(), &[0b1110_0000]);
    }

    #[test]
    fn reader_round_trips_every_width_at_every_offset() {
        for offset in 0..8u32 {
            let mut w = BitWriter::with_prefix(&[], 64);
            w.write_bits(0, offset);
            let mut widths = Vec::new();
            for n in 1..=64u32 {
                let v = 0x9e37_79b9_7f4a_7c15u64.rotate_left(n)
                    & if n == 64 { u64::MAX } else { (1 << n) - 1 };
                w.write_bits(v, n);
                widths.push((n, v));
            }
            let mut r = BitReader::new(w.bytes(), offset as usize);
            for (n, v) in widths {
                assert_eq!(r.read_bits(n), v, "offset {offset} width {n}");
            }
            assert!(!r.overrun());
        }
    }

    #[test]
    fn reads_past_the_end_are_zero_and_flagged() {
        let data = [0xffu8];
        let mut r = BitReader::new(&data, 0);
        assert_eq!(r.read_bits(4), 0xf);
        assert!(!r.overrun());
        assert_eq!(r.read_bits(8), 0xf0);
        assert!(r.overrun());
        assert_eq!(r.read_bits(64), 0);
        let mut r = BitReader::new(&[], 1000);
        assert_eq!(r.read_bits(64), 0);
    }

    #[test]
    fn varints_match_go() {
        let mut buf = [0u8; MAX_VARINT_LEN64];
        for &x in &[0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let n = put_uvarint(&mut buf, x);
            assert_eq!(uvarint(&buf[..n]), Some((x, n)));
            let mut r = BitReader::new(&buf[..n], 0);
            assert_eq!(r.read_uvarint(), Ok(x));
        }
        assert_eq!(put_uvarint(&mut buf, u64::MAX), 10);
        assert_eq!(uvarint(&[0x80, 0x80]), None);
        // 10th byte may only carry one bit.
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(uvarint(&over), None);
        assert_eq!(
            BitReader::new(&over, 0).read_uvarint(),
            Err(VarintError::Overflow)
        );
        assert_eq!(
            BitReader::new(&[0x80], 0).read_uvarint(),
            Err(VarintError::Eof)
        );
        for &x in &[0i64, -1, 1, i64::MIN, i64::MAX, 1_700_000_000_000] {
            assert_eq!(zigzag_decode(zigzag_encode(x)), x);
        }
        assert_eq!(zigzag_encode(-1), 1);
        assert_eq!(zigzag_encode(1), 2);
    }
}
