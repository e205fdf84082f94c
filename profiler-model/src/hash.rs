//! The one stable hash Ember writes where it must never change between builds, machines
//! or releases: 64-bit FNV-1a (ETags of the embedded UI, the ids of pushed windows).
//! `const`, so a hash of embedded bytes is computed at compile time.

/// FNV-1a's 64-bit offset basis: the hash of no bytes.
pub const FNV1A_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV1A_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The FNV-1a hash of `bytes`.
#[must_use]
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV1A_BASIS, bytes)
}

/// Continues the hash `h` (of the bytes before) over `bytes`: the hash of several parts
/// in a row is that of their concatenation.
#[must_use]
pub const fn fnv1a_extend(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV1A_PRIME);
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_parts() {
        // The reference values of the FNV-1a specification's test suite.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_extend(fnv1a(b"foo"), b"bar"), fnv1a(b"foobar"));
    }
}
