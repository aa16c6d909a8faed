//! Tombstones: deleted time ranges per series of a block.
//!
//! File layout (`<block>/tombstones`), all integers big-endian:
//!
//! ```text
//! ┌────────────────────────────┬──────────────────┐
//! │ magic 0x0130BA30 (4 bytes) │ version 1 (byte) │
//! ├────────────────────────────┴──────────────────┤
//! │ { series_ref uvarint64, mint varint64,        │
//! │   maxt varint64 } ...   one per interval      │
//! ├───────────────────────────────────────────────┤
//! │ CRC32-C (4 bytes) over the intervals only     │
//! └───────────────────────────────────────────────┘
//! ```
//!
//! The CRC skips the version byte (Prometheus keeps that quirk "for
//! compatibility"), so an empty file is exactly `01 30 ba 30 01 00 00 00 00`.
//! Prometheus writes intervals in Go map order; we write them sorted by series
//! reference so the file is deterministic. Readers do not care about order.
//!
//! Intervals are closed `[mint, maxt]` and are merged when they touch or
//! overlap (integer timestamps, so `[1,2]` and `[3,4]` become `[1,4]`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::encoding::{crc32c, put_uvarint, put_varint, Decoder};
use crate::error::{Error, Result};
use crate::meta::write_file_atomic;

pub const TOMBSTONES_FILENAME: &str = "tombstones";
const MAGIC: u32 = 0x0130_BA30;
const FORMAT_V1: u8 = 1;

/// A closed time interval `[mint, maxt]` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub mint: i64,
    pub maxt: i64,
}

impl Interval {
    pub fn contains(&self, t: i64) -> bool {
        t >= self.mint && t <= self.maxt
    }
}

/// Adds `n` to sorted, disjoint `ivs`, merging neighbours.
pub fn add_interval(ivs: &mut Vec<Interval>, n: Interval) {
    let mut merged = n;
    let mut out = Vec::with_capacity(ivs.len() + 1);
    let mut placed = false;
    for &iv in ivs.iter() {
        if iv.maxt.saturating_add(1) < merged.mint {
            out.push(iv);
        } else if merged.maxt.saturating_add(1) < iv.mint {
            if !placed {
                out.push(merged);
                placed = true;
            }
            out.push(iv);
        } else {
            merged.mint = merged.mint.min(iv.mint);
            merged.maxt = merged.maxt.max(iv.maxt);
        }
    }
    if !placed {
        out.push(merged);
    }
    *ivs = out;
}

/// Whether `t` falls in any of the sorted intervals.
pub fn is_deleted(ivs: &[Interval], t: i64) -> bool {
    ivs.iter().any(|iv| iv.contains(t))
}

/// Deleted intervals per series reference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tombstones {
    map: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, series_ref: u64, iv: Interval) {
        add_interval(self.map.entry(series_ref).or_default(), iv);
    }

    pub fn get(&self, series_ref: u64) -> Option<&[Interval]> {
        self.map.get(&series_ref).map(|v| v.as_slice())
    }

    /// Number of intervals, what meta.json's `numTombstones` counts.
    pub fn total(&self) -> u64 {
        self.map.values().map(|v| v.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Interval])> {
        self.map.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// Drops every interval that ends before `t`.
    pub fn truncate_before(&mut self, t: i64) {
        self.map.retain(|_, ivs| {
            ivs.retain(|iv| iv.maxt >= t);
            !ivs.is_empty()
        });
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(9 + self.map.len() * 12);
        b.extend_from_slice(&MAGIC.to_be_bytes());
        b.push(FORMAT_V1);
        for (r, ivs) in &self.map {
            for iv in ivs {
                put_uvarint(&mut b, *r);
                put_varint(&mut b, iv.mint);
                put_varint(&mut b, iv.maxt);
            }
        }
        let crc = crc32c(&b[5..]);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(path: &Path, b: &[u8]) -> Result<Self> {
        if b.len() < 9 {
            return Err(Error::corrupted(
                path,
                "tombstones file shorter than its header",
            ));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let mut d = Decoder::new(body);
        let magic = d.be32();
        if magic != MAGIC {
            return Err(Error::corrupted(
                path,
                format!("invalid tombstones magic {magic:#x}"),
            ));
        }
        let version = d.byte();
        if version != FORMAT_V1 {
            return Err(Error::corrupted(
                path,
                format!("invalid tombstones format {version}"),
            ));
        }
        let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c(&body[5..]) != want {
            return Err(Error::corrupted(path, "tombstones checksum mismatch"));
        }
        let mut t = Tombstones::new();
        while !d.is_empty() {
            let r = d.uvarint();
            let mint = d.varint();
            let maxt = d.varint();
            if let Some(e) = d.err() {
                return Err(Error::corrupted(path, format!("tombstone entry: {e}")));
            }
            t.add(r, Interval { mint, maxt });
        }
        Ok(t)
    }

    /// Reads `<dir>/tombstones`; a missing file means no tombstones.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(TOMBSTONES_FILENAME);
        match fs::read(&path) {
            Ok(b) => Self::decode(&path, &b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Writes `<dir>/tombstones` atomically (tmp, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<u64> {
        let path = dir.join(TOMBSTONES_FILENAME);
        let b = self.encode();
        write_file_atomic(&dir.join("tombstones.tmp"), &path, &b)?;
        Ok(b.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_matches_prometheus_bytes() {
        assert_eq!(
            Tombstones::new().encode(),
            [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0]
        );
    }

    #[test]
    fn intervals_merge_like_prometheus() {
        let mut v = Vec::new();
        add_interval(&mut v, Interval { mint: 10, maxt: 20 });
        add_interval(&mut v, Interval { mint: 30, maxt: 40 });
        add_interval(&mut v, Interval { mint: 0, maxt: 2 });
        assert_eq!(v.len(), 3);
        add_interval(&mut v, Interval { mint: 21, maxt: 29 });
        assert_eq!(
            v,
            vec![
                Interval { mint: 0, maxt: 2 },
                Interval { mint: 10, maxt: 40 }
            ]
        );
        add_interval(
            &mut v,
            Interval {
                mint: i64::MIN,
                maxt: i64::MAX,
            },
        );
        assert_eq!(
            v,
            vec![Interval {
                mint: i64::MIN,
                maxt: i64::MAX
            }]
        );
    }

    #[test]
    fn round_trip_and_corruption() {
        let mut t = Tombstones::new();
        t.add(
            5,
            Interval {
                mint: -3,
                maxt: 100,
            },
        );
        t.add(1, Interval { mint: 7, maxt: 8 });
        let b = t.encode();
        let p = Path::new("/blk/tombstones");
        assert_eq!(Tombstones::decode(p, &b).unwrap(), t);
        assert_eq!(t.total(), 2);
        for cut in 0..b.len() {
            assert!(Tombstones::decode(p, &b[..cut]).is_err());
        }
        let mut bad = b.clone();
        bad[6] ^= 1;
        let e = Tombstones::decode(p, &bad).unwrap_err().to_string();
        assert!(
            e.contains("/blk/tombstones") && e.contains("checksum"),
            "{e}"
        );
    }
}
