//! Payload masking (RFC 6455 5.3): byte `i` of the payload is XORed with `mask[i % 4]`.
//!
//! Masking is its own inverse, so the same functions mask and unmask. [`apply_mask`] picks the widest
//! SIMD implementation the CPU supports once, at first use, and caches it; [`apply_mask_scalar`] is the
//! portable implementation every other one is checked against.

use std::sync::OnceLock;

/// Masks (or unmasks) `buf` in place. `offset` is the position of `buf[0]` within the payload, so a
/// payload can be processed in pieces: masking `p[..k]` with offset 0 and then `p[k..]` with offset `k`
/// equals masking `p` at once.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Below one SSE register the dispatch would cost more than it saves.
    if buf.len() < 16 {
        apply_mask_scalar(buf, mask, offset);
        return;
    }
    let implementation = SELECTED.get_or_init(select_implementation);
    implementation(buf, mask, offset);
}

/// Portable implementation of [`apply_mask`]: eight bytes per step, no CPU-specific instructions.
pub fn apply_mask_scalar(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let key = rotate(mask, offset);
    let wide_key = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide_key).to_ne_bytes());
    }
    // Every step covers a multiple of 4 bytes, so the tail starts at key phase 0 again.
    for (byte, key_byte) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= key_byte;
    }
}

/// The definition from RFC 6455 5.3, byte by byte: the reference the tests check
/// [`apply_mask_scalar`] against. Public only so the benchmarks can compare with it.
#[doc(hidden)]
pub fn apply_mask_by_definition(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (index, byte) in buf.iter_mut().enumerate() {
        *byte ^= mask[(offset % 4 + index) % 4];
    }
}

/// Every implementation this CPU can run, by name, for the tests that check them against
/// [`apply_mask_scalar`]. Public only so the benchmarks can time each one, not just the one
/// [`apply_mask`] picks.
#[doc(hidden)]
pub fn implementations() -> Vec<(&'static str, MaskFn)> {
    let mut found: Vec<(&'static str, MaskFn)> =
        vec![("scalar", apply_mask_scalar), ("dispatched", apply_mask)];
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if is_x86_feature_detected!("avx2") {
            found.push(("avx2", x86::avx2));
        }
        if is_x86_feature_detected!("sse2") {
            found.push(("sse2", x86::sse2));
        }
    }
    found
}

type MaskFn = fn(&mut [u8], [u8; 4], usize);

static SELECTED: OnceLock<MaskFn> = OnceLock::new();

/// The key as seen from a slice that starts `offset` bytes into the payload.
fn rotate(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let mut key = mask;
    key.rotate_left(offset % 4);
    key
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn select_implementation() -> MaskFn {
    if is_x86_feature_detected!("avx2") {
        x86::avx2
    } else if is_x86_feature_detected!("sse2") {
        x86::sse2
    } else {
        apply_mask_scalar
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn select_implementation() -> MaskFn {
    apply_mask_scalar
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86 {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    use super::{apply_mask_scalar, rotate};

    /// Entry point stored by `select_implementation` only after AVX2 was detected.
    pub(super) fn avx2(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        debug_assert!(is_x86_feature_detected!("avx2"));
        // SAFETY: `select_implementation` and `implementations` hand out this function only when
        // the running CPU reports AVX2.
        unsafe { avx2_impl(buf, mask, offset) }
    }

    /// Entry point stored by `select_implementation` only after SSE2 was detected.
    pub(super) fn sse2(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        debug_assert!(is_x86_feature_detected!("sse2"));
        // SAFETY: `select_implementation` and `implementations` hand out this function only when
        // the running CPU reports SSE2.
        unsafe { sse2_impl(buf, mask, offset) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2_impl(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        let key = rotate(mask, offset);
        let wide_key = _mm256_set1_epi32(i32::from_ne_bytes(key));
        let mut blocks = buf.chunks_exact_mut(32);
        for block in &mut blocks {
            let ptr = block.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `block` is exactly 32 writable bytes; the unaligned load/store forms have no
            // alignment requirement.
            unsafe {
                _mm256_storeu_si256(ptr, _mm256_xor_si256(_mm256_loadu_si256(ptr), wide_key))
            };
        }
        // 32 is a multiple of 4: the remainder starts at key phase 0.
        apply_mask_scalar(blocks.into_remainder(), key, 0);
    }

    #[target_feature(enable = "sse2")]
    unsafe fn sse2_impl(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        let key = rotate(mask, offset);
        let wide_key = _mm_set1_epi32(i32::from_ne_bytes(key));
        let mut blocks = buf.chunks_exact_mut(16);
        for block in &mut blocks {
            let ptr = block.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `block` is exactly 16 writable bytes; the unaligned load/store forms have no
            // alignment requirement.
            unsafe { _mm_storeu_si128(ptr, _mm_xor_si128(_mm_loadu_si128(ptr), wide_key)) };
        }
        apply_mask_scalar(blocks.into_remainder(), key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example_masks_hello() {
        // RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn masking_twice_restores_the_input() {
        let original: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let mut buf = original.clone();
        apply_mask(&mut buf, [1, 2, 3, 4], 3);
        assert_ne!(buf, original);
        apply_mask(&mut buf, [1, 2, 3, 4], 3);
        assert_eq!(buf, original);
    }

    #[test]
    fn huge_offset_does_not_overflow() {
        let mut fast = vec![0xAAu8; 100];
        let mut reference = fast.clone();
        apply_mask(&mut fast, [9, 8, 7, 6], usize::MAX);
        apply_mask_by_definition(&mut reference, [9, 8, 7, 6], usize::MAX);
        assert_eq!(fast, reference);
    }

    proptest! {
        #[test]
        fn scalar_matches_the_definition(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            mask in any::<[u8; 4]>(),
            offset in any::<usize>(),
        ) {
            let mut scalar = data.clone();
            let mut reference = data;
            apply_mask_scalar(&mut scalar, mask, offset);
            apply_mask_by_definition(&mut reference, mask, offset);
            prop_assert_eq!(scalar, reference);
        }

        #[test]
        fn every_implementation_matches_scalar(
            data in proptest::collection::vec(any::<u8>(), 0..4096 + 64),
            start in 0usize..64,
            len in 0usize..4096,
            mask in any::<[u8; 4]>(),
            offset in 0usize..1 << 20,
        ) {
            // An arbitrary start inside the allocation makes the slice unaligned.
            let start = start.min(data.len());
            let end = (start + len).min(data.len());
            let mut expected = data.clone();
            apply_mask_scalar(&mut expected[start..end], mask, offset);
            for (name, implementation) in implementations() {
                let mut actual = data.clone();
                implementation(&mut actual[start..end], mask, offset);
                prop_assert_eq!(&actual, &expected, "implementation {}", name);
            }
        }

        #[test]
        fn masking_resumes_mid_payload(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            split in any::<prop::sample::Index>(),
            mask in any::<[u8; 4]>(),
        ) {
            let split = split.index(data.len() + 1);
            let mut whole = data.clone();
            apply_mask(&mut whole, mask, 0);
            let mut pieces = data;
            let (head, tail) = pieces.split_at_mut(split);
            apply_mask(head, mask, 0);
            apply_mask(tail, mask, split);
            prop_assert_eq!(pieces, whole);
        }
    }
}
