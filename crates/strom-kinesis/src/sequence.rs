//! Kinesis sequence numbers: fixed-width decimal strings that encode (shard, offset).
//!
//! Layout, 56 decimal digits like AWS's:
//!
//! ```text
//! 49 SSSSSSSSSS OOOOOOOOOOOOOOOOOOOO 000000000000000000000000
//! ^^ version    ^ offset, 20 digits  ^ reserved (sub-sequence), 24 zeros
//!    ^ shard (partition) index, 10 digits
//! ```
//!
//! Within one shard the strings compare (as numbers and as strings) in offset order; the
//! encoding is reversible, so `AT_SEQUENCE_NUMBER` needs no lookup.

use std::fmt;
use std::str::FromStr;

/// The length of every sequence number.
pub const LEN: usize = 56;
const PREFIX: &str = "49";
const SHARD_DIGITS: usize = 10;
const OFFSET_DIGITS: usize = 20;
const RESERVED_DIGITS: usize = LEN - PREFIX.len() - SHARD_DIGITS - OFFSET_DIGITS;

/// A decoded sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber {
    /// Shard (partition) index.
    pub shard: u32,
    /// Offset within the partition.
    pub offset: u64,
}

impl SequenceNumber {
    /// The sequence number of `offset` in shard `shard`.
    pub fn new(shard: u32, offset: u64) -> SequenceNumber {
        SequenceNumber { shard, offset }
    }
}

impl SequenceNumber {
    /// The decimal digits of this sequence number (what [`fmt::Display`] writes), without the
    /// formatting machinery: `GetRecords` and `PutRecords` write one per record.
    pub fn digits(&self) -> [u8; LEN] {
        let mut out = [b'0'; LEN];
        out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        let shard_end = PREFIX.len() + SHARD_DIGITS;
        put_decimal(&mut out[PREFIX.len()..shard_end], u64::from(self.shard));
        // The reserved digits after the offset stay zero.
        put_decimal(&mut out[shard_end..LEN - RESERVED_DIGITS], self.offset);
        out
    }
}

/// Writes `n` right-aligned into `out` (already zero-filled); `out` is wide enough for any
/// `u64` (20 digits) and for any `u32` (10).
fn put_decimal(out: &mut [u8], mut n: u64) {
    for d in out.iter_mut().rev() {
        if n == 0 {
            break;
        }
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.digits();
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

/// A string that is not one of our sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence number {0:?}")]
pub struct InvalidSequenceNumber(pub String);

impl FromStr for SequenceNumber {
    type Err = InvalidSequenceNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSequenceNumber(s.chars().take(64).collect());
        if s.len() != LEN || !s.bytes().all(|b| b.is_ascii_digit()) || !s.starts_with(PREFIX) {
            return Err(bad());
        }
        let shard_end = PREFIX.len() + SHARD_DIGITS;
        let offset_end = shard_end + OFFSET_DIGITS;
        let (Some(shard), Some(offset), Some(reserved)) = (
            s.get(PREFIX.len()..shard_end),
            s.get(shard_end..offset_end),
            s.get(offset_end..),
        ) else {
            return Err(bad());
        };
        if reserved.bytes().any(|b| b != b'0') {
            return Err(bad());
        }
        Ok(SequenceNumber {
            shard: shard.parse().map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout() {
        let s = SequenceNumber::new(3, 42).to_string();
        assert_eq!(s.len(), LEN);
        assert_eq!(
            s,
            "49000000000300000000000000000042000000000000000000000000"
        );
        assert_eq!(
            s.parse::<SequenceNumber>().unwrap(),
            SequenceNumber::new(3, 42)
        );
        for bad in [
            "",
            "1",
            "x".repeat(56).as_str(),
            &("48".to_owned() + &"0".repeat(54)),
            &("49".to_owned() + &"0".repeat(53) + "1"),
        ] {
            assert!(bad.parse::<SequenceNumber>().is_err(), "{bad}");
        }
    }

    /// The digits equal the `format!` layout the module doc describes.
    fn formatted(n: SequenceNumber) -> String {
        format!(
            "{PREFIX}{:0sw$}{:0ow$}{:0rw$}",
            n.shard,
            n.offset,
            0,
            sw = SHARD_DIGITS,
            ow = OFFSET_DIGITS,
            rw = RESERVED_DIGITS
        )
    }

    #[test]
    fn digits_at_the_extremes() {
        for n in [
            SequenceNumber::new(0, 0),
            SequenceNumber::new(u32::MAX, u64::MAX),
            SequenceNumber::new(1, 10),
        ] {
            assert_eq!(n.to_string(), formatted(n));
        }
    }

    proptest! {
        #[test]
        fn digits_match_the_format(shard in 0u32.., offset in 0u64..) {
            let n = SequenceNumber::new(shard, offset);
            prop_assert_eq!(n.to_string(), formatted(n));
        }

        #[test]
        fn round_trip_and_order(shard in 0u32.., a in 0u64..i64::MAX as u64, b in 0u64..i64::MAX as u64) {
            let sa = SequenceNumber::new(shard, a).to_string();
            let sb = SequenceNumber::new(shard, b).to_string();
            prop_assert_eq!(sa.parse::<SequenceNumber>().unwrap(), SequenceNumber::new(shard, a));
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<SequenceNumber>();
        }
    }
}
