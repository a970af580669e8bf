//! IPv6 neighbour discovery (RFC 4861), the part a host that owns addresses needs: read a
//! Neighbor Solicitation and build the Neighbor Advertisement that answers it — IPv6's ARP.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Type (135/136)|    Code (0)   |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|S|O|                 Reserved (NS: all reserved)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Target Address (128 bits)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Options: type 1 (source) / 2 (target) link-layer address,   |
//! |   length in units of 8 bytes, the 6-byte MAC                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::checksum::{finish, pseudo_header_v6, sum, verifies};
use super::ethernet::EthernetAddress;
use super::WireError;
use std::net::Ipv6Addr;

/// ICMPv6's next-header number.
pub const ICMPV6: u8 = 58;
const SOLICITATION: u8 = 135;
const ADVERTISEMENT: u8 = 136;
/// Bytes of a solicitation or advertisement before its options.
const BODY_LEN: usize = 24;
/// An advertisement with its target link-layer address option.
pub const ADVERTISEMENT_LEN: usize = BODY_LEN + 8;

/// A Neighbor Solicitation as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicitation {
    pub target: Ipv6Addr,
    /// The solicitor's MAC (absent in duplicate address detection, from `::`).
    pub source_mac: Option<EthernetAddress>,
}

impl Solicitation {
    /// Reads an ICMPv6 message (`icmp`, the IPv6 payload) sent from `src` to `dst` with hop
    /// limit `hop_limit`: a solicitation that RFC 4861 7.1.1's checks accept (hop limit 255,
    /// code 0, the checksum, a unicast target, options of non-zero length), or an error.
    /// Another ICMPv6 message is `Unsupported`.
    pub fn parse(icmp: &[u8], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Result<Solicitation, WireError> {
        if icmp.len() < BODY_LEN {
            return Err(WireError::Truncated("neighbor solicitation"));
        }
        if icmp[0] != SOLICITATION {
            return Err(WireError::Unsupported("ICMPv6", "a message other than a neighbor solicitation"));
        }
        if hop_limit != 255 || icmp[1] != 0 {
            return Err(WireError::Malformed("neighbor solicitation", "hop limit not 255 or code not 0 (RFC 4861 7.1.1)"));
        }
        if !verifies(pseudo_header_v6(src, dst, ICMPV6, icmp.len() as u32) + sum(icmp)) {
            return Err(WireError::Malformed("neighbor solicitation", "checksum wrong"));
        }
        let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).unwrap_or_default());
        if target.is_multicast() {
            return Err(WireError::Malformed("neighbor solicitation", "a multicast target"));
        }
        let mut source_mac = None;
        let mut options = &icmp[BODY_LEN..];
        while options.len() >= 2 {
            let len = usize::from(options[1]) * 8;
            if len == 0 || len > options.len() {
                return Err(WireError::Malformed("neighbor solicitation", "an option of length 0 or beyond the message"));
            }
            if options[0] == 1 && len >= 8 {
                source_mac = Some(EthernetAddress(options[2..8].try_into().unwrap_or_default()));
            }
            options = &options[len..];
        }
        if src.is_unspecified() && source_mac.is_some() {
            return Err(WireError::Malformed("neighbor solicitation", "a source link-layer option from ::"));
        }
        Ok(Solicitation { target, source_mac })
    }
}

/// Writes into `buffer` (at least [`ADVERTISEMENT_LEN`] bytes) the solicited Neighbor
/// Advertisement for `target` at `mac`, from `src` to `dst` (RFC 4861 7.2.4: solicited and
/// override set; to all nodes, unsolicited, when the solicitation came from `::`).
pub fn emit_advertisement(buffer: &mut [u8], target: Ipv6Addr, mac: EthernetAddress, src: Ipv6Addr, dst: Ipv6Addr) {
    let b = &mut buffer[..ADVERTISEMENT_LEN];
    b.fill(0);
    b[0] = ADVERTISEMENT;
    let solicited = !dst.is_multicast();
    b[4] = if solicited { 0x60 } else { 0x20 }; // S and O, or O alone
    b[8..24].copy_from_slice(&target.octets());
    b[24] = 2; // target link-layer address
    b[25] = 1;
    b[26..32].copy_from_slice(&mac.0);
    let check = finish(pseudo_header_v6(src, dst, ICMPV6, ADVERTISEMENT_LEN as u32) + sum(b));
    b[2..4].copy_from_slice(&check.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solicitation(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut m = vec![0u8; BODY_LEN];
        m[0] = SOLICITATION;
        m[8..24].copy_from_slice(&target.octets());
        if let Some(mac) = mac {
            m.extend_from_slice(&[1, 1]);
            m.extend_from_slice(&mac);
        }
        let check = finish(pseudo_header_v6(src, dst, ICMPV6, m.len() as u32) + sum(&m));
        m[2..4].copy_from_slice(&check.to_be_bytes());
        m
    }

    #[test]
    fn a_solicitation_is_read_and_its_advertisement_checks_out_rfc4861() {
        let (src, target) = ("2001:db8::1".parse().unwrap(), "2001:db8::80".parse().unwrap());
        let dst: Ipv6Addr = "ff02::1:ff00:80".parse().unwrap();
        let m = solicitation(src, dst, target, Some([2, 0, 0, 0, 0, 1]));
        let s = Solicitation::parse(&m, src, dst, 255).unwrap();
        assert_eq!((s.target, s.source_mac), (target, Some(EthernetAddress([2, 0, 0, 0, 0, 1]))));
        assert!(Solicitation::parse(&m, src, dst, 64).is_err(), "hop limit 255 only: it never crossed a router");
        let mut bad = m.clone();
        bad[10] ^= 1;
        assert!(Solicitation::parse(&bad, src, dst, 255).is_err(), "checksum");
        let dad = solicitation(Ipv6Addr::UNSPECIFIED, dst, target, None);
        assert_eq!(Solicitation::parse(&dad, Ipv6Addr::UNSPECIFIED, dst, 255).unwrap().source_mac, None);

        let mut na = [0u8; ADVERTISEMENT_LEN];
        emit_advertisement(&mut na, target, EthernetAddress([2, 0, 0, 0, 0, 0x50]), target, src);
        assert!(verifies(pseudo_header_v6(target, src, ICMPV6, na.len() as u32) + sum(&na)));
        assert_eq!((na[0], na[4], &na[8..24], &na[26..32]), (ADVERTISEMENT, 0x60, &target.octets()[..], &[2, 0, 0, 0, 0, 0x50][..]));
    }
}
