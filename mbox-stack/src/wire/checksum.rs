//! The Internet checksum (RFC 1071) over headers and payloads, the TCP/UDP pseudo-headers
//! (RFC 9293 3.1, RFC 8200 8.1), and incremental updates for rewritten fields (RFC 1624).
//!
//! Sums are kept unfolded in a `u64` so that pieces (pseudo-header, header, payload) add up in
//! any order; [`finish`] folds and complements once at the end.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The ones'-complement sum of `data` as 16-bit big-endian words (a trailing odd byte is padded
/// with zero), unfolded.
///
/// Adds 32-bit words: folding later gives the same 16-bit sum because 2^16 ≡ 1 modulo
/// 2^16 - 1 (RFC 1071 2(B)), and half the additions.
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    // The remainder's 16-bit words keep their position (even offsets), so the padded word adds
    // the same as its halves would.
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds an unfolded sum into 16 bits with end-around carries.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field's value for a sum of everything it covers (the field itself as zero).
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// True when data that includes its checksum field sums to all ones (RFC 1071 1(4)).
#[inline]
pub fn verifies(acc: u64) -> bool {
    fold(acc) == 0xffff
}

/// The IPv4 pseudo-header of a TCP or UDP segment of `len` bytes (RFC 9293 3.1).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u32) -> u64 {
    sum(&src.octets()) + sum(&dst.octets()) + u64::from(protocol) + u64::from(len)
}

/// The IPv6 pseudo-header of an upper-layer packet of `len` bytes (RFC 8200 8.1).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    sum(&src.octets()) + sum(&dst.octets()) + u64::from(next_header) + u64::from(len)
}

/// The checksum after one 16-bit word it covers changed from `old` to `new`:
/// HC' = ~(~HC + ~m + m') (RFC 1624 3, equation 3), which never yields the -0 (0xffff) that
/// equation 2 can: the same value a computation from scratch gives ([`finish`]) for data
/// that are not all zero (an IP header or a TCP segment with its pseudo-header never is).
///
/// A field that did not change (`old == new`) leaves a checksum as it was, 0x0000 included:
/// `~m + m` is 0xffff, which end-around carries add as zero (the worry of RFC 1624's erratum
/// 4782 is for adders without them). A received checksum of 0xffff, which verifies where
/// 0x0000 does (one's complement's two zeros), comes out as a full computation would write it.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    update(check, u64::from(!old) + u64::from(new))
}

/// [`update16`] for any number of rewritten words at once: `delta` is the unfolded sum, over
/// the words that changed, of `!old + new` (each as a `u64`; [`delta16`], [`delta32`]), so
/// that a packet whose fields all change folds once (RFC 1624 3, equation 3, with `~m + m'`
/// summed over the fields).
#[inline]
pub fn update(check: u16, delta: u64) -> u16 {
    match fold(u64::from(!check) + delta) {
        // Only when ~HC and every term are +0 (HC = 0xffff, each old word 0xffff and each new
        // one 0): the new sum is a zero, which for data not all zero end-around carries
        // write as -0 (0xffff), whose checksum is 0x0000.
        0 => 0,
        sum => !sum,
    }
}

/// One 16-bit word's term of an [`update`] delta.
#[inline]
pub fn delta16(old: u16, new: u16) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// A 32-bit field's term of an [`update`] delta: its two 16-bit words.
#[inline]
pub fn delta32(old: u32, new: u32) -> u64 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// [`update16`] for a 32-bit field (a sequence number, an IPv4 address).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    update(check, delta32(old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 3's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        assert_eq!(fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), 0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_zero_and_pieces_add_in_any_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = fold(sum(&data));
        for split in [0usize, 2, 4, 100, 1000] {
            assert_eq!(fold(sum(&data[..split]) + sum(&data[split..])), whole, "split at {split}");
        }
        assert_eq!(fold(sum(&[0xab])), 0xab00);
    }

    #[test]
    fn a_checksummed_buffer_verifies_and_a_flipped_bit_does_not() {
        // An IPv4 header as a kernel sent it (checksum 0xb861).
        let mut h =
            [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];
        assert!(verifies(sum(&h)));
        let field = u16::from_be_bytes([h[10], h[11]]);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(finish(sum(&h)), field);
        h[10..12].copy_from_slice(&field.to_be_bytes());
        h[3] ^= 1;
        assert!(!verifies(sum(&h)));
    }

    #[test]
    fn incremental_updates_equal_recomputing() {
        let mut h: Vec<u8> = (0..40u8).map(|b| b.wrapping_mul(37)).collect();
        h[10..12].copy_from_slice(&[0, 0]);
        let check = finish(sum(&h));
        let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        for new in [0u32, 1, 0xffff_ffff, 0x1234_5678, old] {
            h[12..16].copy_from_slice(&new.to_be_bytes());
            assert_eq!(update32(check, old, new), finish(sum(&h)), "new {new:#x}");
        }
    }

    /// RFC 1624 3/4: where the data sum to -0 (checksum 0x0000), equation 3 keeps 0x0000 for
    /// an unchanged field (erratum 4782's case: HC 0, m = m' = 0x5555) and moves to what a
    /// computation from scratch gives; a received 0xffff (the other zero) comes out canonical.
    #[test]
    fn rfc1624_zero_checksums_come_out_as_computed_from_scratch() {
        assert_eq!(update16(0x0000, 0x5555, 0x5555), 0x0000, "erratum 4782's example");
        // Data [0x5555, 0xaaaa, 0x0001, 0xfffe] sum to 0xffff + 0xffff: -0, checksum 0x0000.
        let mut words = [0x5555u16, 0xaaaa, 0x0001, 0xfffe];
        let bytes = |w: &[u16]| w.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(finish(sum(&bytes(&words))), 0x0000);
        for hc in [0x0000, 0xffff] {
            assert!(verifies(sum(&bytes(&words)) + u64::from(hc)), "both zeros verify");
            assert_eq!(update16(hc, 0x5555, 0x5555), 0x0000);
        }
        // The one input `!fold(~HC + ~m + m')` alone got wrong (0xffff): ~HC, ~m and m' all
        // +0. [0x5555, 0xffff, 0x0001, 0xaaa9] sums to -0; with 0xffff -> 0 it still does.
        words = [0x5555, 0xffff, 0x0001, 0xaaa9];
        assert_eq!(finish(sum(&bytes(&words))), 0x0000);
        let old = words[1];
        words[1] = 0;
        let expect = finish(sum(&bytes(&words)));
        assert_eq!(expect, 0x0000);
        assert_eq!(update16(0xffff, old, 0), expect, "a received 0xffff, a field 0xffff -> 0");
        assert_eq!(update16(0x0000, old, 0), expect, "the same from the canonical 0x0000");
        assert_ne!(update16(0xffff, 0xffff, 0), 0xffff, "never -0");
    }

    use proptest::prelude::*;

    /// 16-bit words with one of them adjusted so that the whole sums to `target` (0xffff: a
    /// checksum of 0x0000; 0xfffe and 0x0001 near it), or left as drawn.
    fn words() -> impl Strategy<Value = Vec<u16>> {
        (prop::collection::vec(any::<u16>(), 2..40), prop::sample::select(vec![None, Some(0xffffu16), Some(0xfffe), Some(0x0001)]))
            .prop_map(|(mut w, target)| {
                if let Some(target) = target {
                    // Make word 0 the one's complement difference between target and the rest.
                    w[0] = 0;
                    let rest = fold(w.iter().map(|&x| u64::from(x)).sum());
                    w[0] = fold(u64::from(target) + u64::from(!rest));
                }
                w
            })
    }

    fn bytes(w: &[u16]) -> Vec<u8> {
        w.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    proptest! {
        /// RFC 1624 equation 3 equals recomputing (RFC 1071) for any word changed to any value,
        /// sums that end at 0x0000 or 0xffff included, from either zero's checksum.
        #[test]
        fn update16_equals_recomputing_rfc1624(mut w in words(), at in any::<prop::sample::Index>(), new in any::<u16>(),
                                               new_sum in prop::sample::select(vec![None, Some(0xffffu16), Some(0x0001)])) {
            let at = at.index(w.len());
            // Sometimes the value that makes the new sum -0 (checksum 0x0000) or 1 (0xfffe).
            let rest = fold(w.iter().enumerate().filter(|&(i, _)| i != at).map(|(_, &x)| u64::from(x)).sum());
            let new = new_sum.map_or(new, |target| fold(u64::from(target) + u64::from(!rest)));
            let check = finish(sum(&bytes(&w)));
            let received = [check, if check == 0 { 0xffff } else { check }];
            let old = w[at];
            w[at] = new;
            let expect = finish(sum(&bytes(&w)));
            for hc in received {
                prop_assert_eq!(update16(hc, old, new), expect, "HC {:#x} m {:#x} m' {:#x}", hc, old, new);
            }
            prop_assert!(w.iter().all(|&x| x == 0) || expect != 0xffff);
        }

        /// The same for a 32-bit field and for several fields folded once ([`update`]).
        #[test]
        fn update32_and_update_equal_recomputing_rfc1624(mut w in words(), at in any::<prop::sample::Index>(), new in any::<u32>(),
                                                         more in prop::collection::vec((any::<prop::sample::Index>(), any::<u16>()), 0..8)) {
            prop_assume!(w.len() >= 2);
            let at = at.index(w.len() - 1);
            let check = finish(sum(&bytes(&w)));
            let old = u32::from(w[at]) << 16 | u32::from(w[at + 1]);
            let mut changed = w.clone();
            changed[at] = (new >> 16) as u16;
            changed[at + 1] = new as u16;
            prop_assert_eq!(update32(check, old, new), finish(sum(&bytes(&changed))));
            let mut delta = 0;
            let mut all = w.clone();
            for (i, v) in more {
                let i = i.index(w.len());
                delta += delta16(all[i], v);
                all[i] = v;
            }
            w = all;
            prop_assert_eq!(update(check, delta), finish(sum(&bytes(&w))));
        }
    }
}
