//! Zig-zag variable-length integers as used inside records (protobuf style).

/// Appends `value` as a zig-zag varint (Kafka's `varint`, a 32-bit zig-zag value).
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_uvarint(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` as a zig-zag varlong (Kafka's `varlong`).
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Number of bytes [`put_varint`] writes for `value`.
pub(crate) fn varint_len(value: i32) -> usize {
    let mut v = ((value << 1) ^ (value >> 31)) as u32;
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Number of bytes [`put_varlong`] writes for `value`.
pub(crate) fn varlong_len(value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended before the last byte (one without the continuation bit).
    Truncated,
    /// More bytes than the type allows (5 for a varint, 10 for a varlong), or bits set beyond
    /// the type's width in the last allowed byte.
    Overflow,
}

impl VarintError {
    /// A short description for [`crate::Error::MalformedRecord`].
    pub(crate) fn reason(self) -> &'static str {
        match self {
            VarintError::Truncated => "varint runs past the end of the record",
            VarintError::Overflow => "varint is too long for its type",
        }
    }
}

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes whose value fits in `bits` bits.
/// Returns the value and the number of bytes read.
fn get_uvarint(buf: &[u8], max_bytes: usize, bits: u32) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(max_bytes) {
        let shift = 7 * i as u32;
        let payload = u64::from(byte & 0x7f);
        // Bits of this byte that would land at or beyond `bits`.
        if shift + 7 > bits && payload >> (bits - shift) != 0 {
            return Err(VarintError::Overflow);
        }
        value |= payload << shift;
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= max_bytes {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Reads a zig-zag varint (Kafka's `varint`) from the start of `buf`; at most 5 bytes.
/// Returns the value and the number of bytes read.
pub(crate) fn get_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, n) = get_uvarint(buf, 5, 32)?;
    let raw = raw as u32;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), n))
}

/// Reads a zig-zag varlong (Kafka's `varlong`) from the start of `buf`; at most 10 bytes.
/// Returns the value and the number of bytes read.
pub(crate) fn get_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, n) = get_uvarint(buf, 10, 64)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    fn varlong_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, v);
        out
    }

    #[test]
    fn varint_round_trips_edge_values() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, -8192, i32::MAX, i32::MIN] {
            let bytes = varint_bytes(v);
            assert_eq!(bytes.len(), varint_len(v), "{v}");
            assert_eq!(get_varint(&bytes), Ok((v, bytes.len())), "{v}");
        }
    }

    #[test]
    fn varlong_round_trips_edge_values() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            1 << 40,
            -(1 << 40),
            i64::MAX,
            i64::MIN,
        ] {
            let bytes = varlong_bytes(v);
            assert_eq!(bytes.len(), varlong_len(v), "{v}");
            assert_eq!(get_varlong(&bytes), Ok((v, bytes.len())), "{v}");
        }
        assert_eq!(varlong_bytes(i64::MIN).len(), 10);
    }

    #[test]
    fn zig_zag_encoding_matches_the_spec() {
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(-1), [0x01]);
        assert_eq!(varint_bytes(1), [0x02]);
        assert_eq!(varint_bytes(-2), [0x03]);
        assert_eq!(varint_bytes(64), [0x80, 0x01]);
    }

    #[test]
    fn reads_only_what_it_needs() {
        assert_eq!(get_varint(&[0x02, 0xff, 0xff]), Ok((1, 1)));
        // Non-minimal encodings are accepted, as the Java client does.
        assert_eq!(get_varint(&[0x82, 0x00]), Ok((1, 2)));
    }

    #[test]
    fn truncated_varints_are_rejected() {
        assert_eq!(get_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get_varlong(&[0xff; 9]), Err(VarintError::Truncated));
    }

    #[test]
    fn over_long_varints_are_rejected() {
        assert_eq!(get_varint(&[0xff; 5]), Err(VarintError::Overflow));
        assert_eq!(get_varint(&[0xff; 6]), Err(VarintError::Overflow));
        // Fifth byte may carry only 4 more bits of a 32-bit value.
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x10]),
            Err(VarintError::Overflow)
        );
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok((i32::MIN, 5))
        );
        assert_eq!(get_varlong(&[0xff; 10]), Err(VarintError::Overflow));
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(get_varlong(&max), Ok((i64::MIN, 10)));
        max[9] = 0x02;
        assert_eq!(get_varlong(&max), Err(VarintError::Overflow));
    }
}
