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
