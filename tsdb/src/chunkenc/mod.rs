//! Chunk encodings: how the samples of one series over a short time range
//! are compressed into a few hundred bytes.
//!
//! A chunk is an opaque byte string plus an [`Encoding`] byte that is stored
//! next to it (in the chunk segment files, see [`crate::chunks`], and in the
//! Thanos Store API). The bytes must be exactly those Prometheus 2.42 writes:
//! blocks are shared with Prometheus, `promtool` and Thanos, and the chunk
//! bytes feed the record length and CRC32C of every chunk record.
//!
//! [`Encoding::Xor`] (float samples, Facebook's Gorilla compression as
//! adapted by Prometheus) is what the head and blocks write; see [`xor`] for
//! its bit-by-bit layout and [`bstream`] for the bit packing beneath it,
//! including the trailing zero byte quirk that byte identity depends on.
//! [`histogram`] encodes and decodes the native histogram encodings
//! ([`Encoding::Histogram`], [`Encoding::FloatHistogram`]); nothing stores
//! histogram samples yet, but chunks Prometheus wrote can be read.
//!
//! Main types:
//! - [`XorChunk`]: an appendable chunk. It keeps the appender state (last
//!   timestamp, delta, value and XOR window) next to the bytes, so appending
//!   never re-reads the chunk.
//! - [`XorIter`]: a decoder over borrowed bytes (from a chunk, an mmapped
//!   segment file or a network buffer). Corrupt or truncated input stops
//!   the iteration and sets [`XorIter::err`]; it never panics.

pub mod bstream;
pub mod histogram;
pub mod xor;

pub use xor::{XorChunk, XorIter};

/// Identifies the encoding of a chunk's bytes. The numeric values are the
/// byte stored on disk (`tsdb/chunkenc/chunk.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Never valid in a file; the zero value of Go's `Encoding`.
    None = 0,
    /// Float samples, Gorilla-style XOR compression.
    Xor = 1,
    /// Integer native histograms.
    Histogram = 2,
    /// Float native histograms.
    FloatHistogram = 3,
}

impl Encoding {
    /// The encoding for a stored byte. Out-of-order head encodings (bit
    /// 0x80) and encodings newer than 2.42 are `None`: they never occur in
    /// 2.42 blocks.
    pub fn from_u8(b: u8) -> Option<Encoding> {
        match b {
            0 => Some(Encoding::None),
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            _ => None,
        }
    }

    /// Prometheus's name for the encoding (`Encoding.String()`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::None => "none",
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "floathistogram",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a chunk's bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The bytes end before the number of samples in the header was read
    /// (or before the 2-byte header itself).
    #[error("chunk data truncated")]
    Truncated,
    /// A timestamp varint is longer than 10 bytes or overflows 64 bits.
    #[error("chunk timestamp varint overflows a 64-bit integer")]
    VarintOverflow,
    /// Bits that no encoder produces.
    #[error("corrupted chunk: {0}")]
    Corrupt(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_bytes() {
        for b in 0..=255u8 {
            match Encoding::from_u8(b) {
                Some(e) => assert_eq!(e as u8, b),
                None => assert!(b > 3),
            }
        }
        assert_eq!(Encoding::from_u8(0x81), None);
        assert_eq!(Encoding::Xor.to_string(), "XOR");
    }
}
