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

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{:0sw$}{:0ow$}{:0rw$}",
            self.shard,
            self.offset,
            0,
            sw = SHARD_DIGITS,
            ow = OFFSET_DIGITS,
            rw = RESERVED_DIGITS
        )
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

    proptest! {
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
