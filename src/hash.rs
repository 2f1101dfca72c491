//! A content hash that stays the same across builds, platforms and Rust versions, for
//! naming cache entries: compiled kernels (`gpu::kernels`) and built engines
//! (`engine::accel`). Not for security.

/// FNV-1a, 64-bit, over `parts` in order. Each part is followed by a separator byte, so
/// `["ab", "c"]` and `["a", "bc"]` hash differently.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn known_answers_and_part_boundaries() {
        // No input leaves FNV-1a at its offset basis.
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        // Plain FNV-1a of "a" is 0xaf63dc4c8601ec8c; ours then folds in the separator.
        let a = 0xaf63_dc4c_8601_ec8c_u64;
        assert_eq!(fnv1a(&[b"a"]), (a ^ 0xff).wrapping_mul(0x0100_0000_01b3));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"ab", b"c"]));
    }
}
