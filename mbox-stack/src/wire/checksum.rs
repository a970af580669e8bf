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
/// HC' = ~(~HC + ~m + m') (RFC 1624 3, equation 3), which never yields the -0 that
/// equation 2 can.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// [`update16`] for a 32-bit field (a sequence number, an IPv4 address).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let check = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(check, old as u16, new as u16)
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
}
