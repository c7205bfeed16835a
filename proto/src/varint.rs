//! Zig-zag varints as used by Kafka's record format (protobuf `sint32`/`sint64`).
//!
//! Decoders take a cursor (`&mut &[u8]`) and never read past its end; a
//! truncated or over-long varint is an error, never a panic.

use crate::batch::BatchError;

/// Appends `v` as a zig-zag varint.
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends `v` as a zig-zag varint (32-bit range).
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_varlong(out, i64::from(v));
}

/// Encoded size of `v` as a zig-zag varint.
pub fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a zig-zag varint of at most 10 bytes.
pub fn get_varlong(buf: &mut &[u8]) -> Result<i64, BatchError> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(BatchError::Malformed("truncated varint"));
        };
        *buf = rest;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(BatchError::Malformed("varint longer than 10 bytes"))
}

/// Reads a zig-zag varint that must fit an `i32`.
pub fn get_varint(buf: &mut &[u8]) -> Result<i32, BatchError> {
    i32::try_from(get_varlong(buf)?).map_err(|_| BatchError::Malformed("varint out of i32 range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(v in any::<i64>()) {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let mut cur = out.as_slice();
            prop_assert_eq!(get_varlong(&mut cur).unwrap(), v);
            prop_assert!(cur.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut cur = bytes.as_slice();
            let _ = get_varlong(&mut cur);
        }
    }
}
