//! TCP headers and options (RFC 9293 3.1, RFC 7323 for window scale and timestamps, RFC 2018
//! for SACK; the diagrams are in `docs/wire.md`).

use super::checksum;
use super::{get16, get32, put16, put32, WireError};

/// Bytes of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header holds (data offset 15 × 4 − 20).
pub const MAX_OPTIONS_LEN: usize = 40;

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// A buffer holding a TCP segment: header, options, payload (the whole rest of the buffer, so
/// wrap exactly the IP payload).
#[derive(Debug, Clone)]
pub struct TcpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    #[inline]
    /// Wraps `buffer` once it holds a header whose data offset is at least 20 bytes and within
    /// the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = TcpPacket { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated("TCP header"));
        }
        let header = packet.header_len();
        if header < HEADER_LEN {
            return Err(WireError::Malformed("TCP header", "data offset below 20 bytes"));
        }
        if len < header {
            return Err(WireError::Truncated("TCP options"));
        }
        Ok(packet)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), 0)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), 2)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get32(self.buffer.as_ref(), 4)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get32(self.buffer.as_ref(), 8)
    }

    #[inline]
    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[12] >> 4) * 4
    }

    #[inline]
    /// The flag byte ([`crate::wire::tcp_flags`]); the NS bit of RFC 3540 (historic) is not
    /// included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[13]
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        get16(self.buffer.as_ref(), 14)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), 16)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get16(self.buffer.as_ref(), 18)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    #[inline]
    /// True when the checksum over `pseudo_header` (the IP layer's, for this segment's length),
    /// header and payload is right.
    pub fn verify_checksum(&self, pseudo_header: u64) -> bool {
        checksum::verifies(pseudo_header + checksum::sum(self.buffer.as_ref()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 0, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 2, value);
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        put32(self.buffer.as_mut(), 4, value);
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        put32(self.buffer.as_mut(), 8, value);
    }

    #[inline]
    /// Sets the data offset from a header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[12] = ((header_len / 4) as u8) << 4;
    }

    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[13] = flags;
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 14, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 16, value);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 18, value);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    #[inline]
    /// Computes and writes the checksum over `pseudo_header`, the header and the payload.
    pub fn fill_checksum(&mut self, pseudo_header: u64) {
        self.set_checksum(0);
        let value = checksum::finish(pseudo_header + checksum::sum(self.buffer.as_ref()));
        self.set_checksum(value);
    }
}

/// One option as found in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// The blocks' bytes: pairs of big-endian (left edge, right edge).
    Sack(&'a [u8]),
    Timestamps {
        value: u32,
        echo: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// The options of a header, one at a time; stops after the end-of-list option or the first
/// malformed one (RFC 9293 3.1, MUST-7: an illegal length is an error, not a crash).
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    #[inline]
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionIter { rest: options }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        match kind {
            option_kind::END_OF_LIST => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            option_kind::NO_OPERATION => {
                self.rest = after;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let malformed = |why| Some(Err(WireError::Malformed("TCP option", why)));
        let Some(&len) = after.first() else {
            self.rest = &[];
            return malformed("length missing");
        };
        let len = usize::from(len);
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return malformed("length below 2 or beyond the header");
        }
        let data = &self.rest[2..len];
        self.rest = &self.rest[len..];
        let option = match (kind, data.len()) {
            (option_kind::MSS, 2) => TcpOption::Mss(get16(data, 0)),
            (option_kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (option_kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (option_kind::SACK, n) if n % 8 == 0 && n > 0 => TcpOption::Sack(data),
            (option_kind::TIMESTAMPS, 8) => TcpOption::Timestamps { value: get32(data, 0), echo: get32(data, 4) },
            (
                option_kind::MSS | option_kind::WINDOW_SCALE | option_kind::SACK_PERMITTED | option_kind::SACK | option_kind::TIMESTAMPS,
                _,
            ) => {
                self.rest = &[];
                return malformed("wrong length for its kind");
            }
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Some(Ok(option))
    }
}

/// Up to four SACK blocks, each `(left edge, right edge)` (RFC 2018 3: four fit alone, three
/// beside a timestamp option).
#[derive(Debug, Clone, Copy, Default)]
pub struct SackBlocks {
    len: u8,
    blocks: [(u32, u32); 4],
}

/// Blocks beyond `len` are leftovers, not part of the value.
impl PartialEq for SackBlocks {
    #[inline]
    fn eq(&self, other: &SackBlocks) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl SackBlocks {
    pub const MAX: usize = 4;

    #[inline]
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..usize::from(self.len)]
    }

    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    /// Appends a block; returns false (and keeps the blocks) when four are already held.
    pub fn push(&mut self, block: (u32, u32)) -> bool {
        if self.len() == Self::MAX {
            return false;
        }
        self.blocks[self.len()] = block;
        self.len += 1;
        true
    }

    #[inline]
    /// Keeps the first `len` blocks.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len as u8);
    }
}

/// The options the stacks read and write, as values (unknown options are skipped on parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// The shift count as sent (RFC 7323 2.3: a receiver uses at most 14).
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr) (RFC 7323 3).
    pub timestamps: Option<(u32, u32)>,
    pub sack: SackBlocks,
}

impl TcpOptions {
    #[inline]
    /// Reads the options of a header. A malformed option is an error; SACK blocks beyond four
    /// are ignored.
    pub fn parse(bytes: &[u8]) -> Result<TcpOptions, WireError> {
        let mut options = TcpOptions::default();
        for option in TcpOptionIter::new(bytes) {
            match option? {
                TcpOption::Mss(mss) => options.mss = Some(mss),
                TcpOption::WindowScale(shift) => options.window_scale = Some(shift),
                TcpOption::SackPermitted => options.sack_permitted = true,
                TcpOption::Timestamps { value, echo } => options.timestamps = Some((value, echo)),
                TcpOption::Sack(blocks) => {
                    for b in blocks.chunks_exact(8) {
                        options.sack.push((get32(b, 0), get32(b, 4)));
                    }
                }
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(options)
    }

    #[inline]
    /// The SACK blocks that fit beside the other options in [`MAX_OPTIONS_LEN`].
    fn sack_blocks_that_fit(&self) -> usize {
        let room = MAX_OPTIONS_LEN - self.len_without_sack();
        // Two NOPs, kind, length, then 8 bytes a block.
        (room.saturating_sub(4) / 8).min(self.sack.len())
    }

    #[inline]
    /// Bytes [`TcpOptions::emit`] writes, a multiple of 4.
    pub fn len(&self) -> usize {
        let blocks = self.sack_blocks_that_fit();
        self.len_without_sack() + if blocks > 0 { 4 + 8 * blocks } else { 0 }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn len_without_sack(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let ts_sack = match (self.timestamps.is_some(), self.sack_permitted) {
            (true, _) => 12,
            (false, true) => 4,
            (false, false) => 0,
        };
        let ws = if self.window_scale.is_some() { 4 } else { 0 };
        mss + ts_sack + ws
    }

    #[inline]
    /// Writes the options in the order and padding Linux uses (MSS; SACK-permitted and
    /// timestamps; NOP + window scale; NOP NOP + SACK), each piece 4-byte aligned, into the
    /// start of `out` (at least [`TcpOptions::len`] bytes). SACK blocks that do not fit in 40
    /// bytes are left out, the first ones kept (RFC 2018 4: the most recent block first).
    pub fn emit(&self, out: &mut [u8]) -> usize {
        use option_kind::*;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[MSS, 4, m[0], m[1]]);
        }
        match (self.timestamps, self.sack_permitted) {
            (Some((value, echo)), sack_permitted) => {
                if sack_permitted {
                    put(&[SACK_PERMITTED, 2]);
                } else {
                    put(&[NO_OPERATION, NO_OPERATION]);
                }
                put(&[TIMESTAMPS, 10]);
                put(&value.to_be_bytes());
                put(&echo.to_be_bytes());
            }
            (None, true) => put(&[NO_OPERATION, NO_OPERATION, SACK_PERMITTED, 2]),
            (None, false) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[NO_OPERATION, WINDOW_SCALE, 3, shift]);
        }
        let blocks = self.sack_blocks_that_fit();
        if blocks > 0 {
            put(&[NO_OPERATION, NO_OPERATION, SACK, 2 + 8 * blocks as u8]);
            for &(left, right) in &self.sack.as_slice()[..blocks] {
                put(&left.to_be_bytes());
                put(&right.to_be_bytes());
            }
        }
        at
    }
}

/// A TCP header as values. `ack` is meaningful when the ACK flag is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The window field as sent (unscaled).
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload_len: usize,
}

impl TcpRepr {
    #[inline]
    /// Reads a checked segment's header and options (the checksum is verified apart:
    /// [`TcpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpRepr, WireError> {
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            options: TcpOptions::parse(packet.options())?,
            payload_len: packet.payload().len(),
        })
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    #[inline]
    /// Writes the header and options into `packet`, whose buffer is [`TcpRepr::buffer_len`]
    /// bytes with the payload already in place at [`TcpRepr::header_len`], then the checksum
    /// over `pseudo_header` (from the IP repr), header and payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>, pseudo_header: u64) {
        let header_len = self.header_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window);
        packet.set_urgent_at(self.urgent);
        self.options.emit(packet.options_mut());
        packet.fill_checksum(pseudo_header);
    }
}

/// Property-test strategies for TCP headers, shared by the modules that build segments.
#[cfg(test)]
pub(crate) mod strategies {
    use super::{SackBlocks, TcpOptions};
    use proptest::prelude::*;

    /// Any options `TcpRepr::emit` writes as Linux lays them out (MSS, window scale, SACK
    /// permitted, timestamps, SACK blocks), with only the SACK blocks that fit, so that parse
    /// gives back exactly what was emitted.
    pub(crate) fn options() -> impl Strategy<Value = TcpOptions> {
        let blocks = prop::collection::vec((any::<u32>(), any::<u32>()), 0..=4);
        (prop::option::of(any::<u16>()), prop::option::of(0u8..=14), any::<bool>(), prop::option::of((any::<u32>(), any::<u32>())), blocks)
            .prop_map(|(mss, window_scale, sack_permitted, timestamps, blocks)| {
                let mut o = TcpOptions { mss, window_scale, sack_permitted, timestamps, sack: SackBlocks::default() };
                for b in blocks {
                    o.sack.push(b);
                }
                let keep = o.sack_blocks_that_fit();
                o.sack.truncate(keep);
                o
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::pseudo_header_v4;
    use crate::wire::ip_proto;
    use crate::wire::tcp_flags::{ACK, SYN};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// A SYN as Linux 6.1 sends it: MSS 1460, SACK-permitted, timestamps, window scale 7.
    const LINUX_SYN: [u8; 40] = [
        0xa2, 0x6e, 0x00, 0x50, 0x1c, 0x2b, 0x3d, 0x4e, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0, 0, 0, 0, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn a_linux_syn_parses_and_emits_byte_for_byte() {
        let repr = TcpRepr::parse(&TcpPacket::new_checked(&LINUX_SYN[..]).unwrap()).unwrap();
        assert_eq!((repr.src_port, repr.dst_port, repr.flags, repr.window), (41582, 80, SYN, 64240));
        let o = repr.options;
        assert_eq!((o.mss, o.window_scale, o.sack_permitted, o.timestamps), (Some(1460), Some(7), true, Some((0x10203, 0))));
        let mut out = [0u8; 40];
        let pseudo = pseudo_header_v4(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2), ip_proto::TCP, 40);
        repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), pseudo);
        assert_eq!(&out[..16], &LINUX_SYN[..16]);
        assert_eq!(&out[18..], &LINUX_SYN[18..], "same options, same order and padding");
        assert!(TcpPacket::new_checked(&out[..]).unwrap().verify_checksum(pseudo));
    }

    #[test]
    fn malformed_options_are_errors_and_unknown_ones_are_skipped() {
        for bad in [&[2u8, 0][..], &[2, 4, 5][..], &[3, 4, 1, 1][..], &[8, 2][..], &[5, 3, 0][..], &[30][..]] {
            assert!(TcpOptions::parse(bad).is_err(), "{bad:?}");
        }
        let parsed = TcpOptions::parse(&[30, 4, 9, 9, 1, 2, 4, 5, 0xb4, 0, 7, 7]).unwrap();
        assert_eq!(parsed.mss, Some(0x5b4), "an unknown option skipped, bytes after end-of-list ignored");
    }

    #[test]
    fn sack_blocks_beyond_the_room_are_left_out_first_ones_kept() {
        let mut o = TcpOptions { timestamps: Some((1, 2)), ..TcpOptions::default() };
        for i in 0..4 {
            o.sack.push((i * 100, i * 100 + 50));
        }
        assert_eq!(o.len(), 12 + 4 + 24, "three blocks beside a timestamp");
        let mut buf = [0u8; 40];
        let n = o.emit(&mut buf);
        let back = TcpOptions::parse(&buf[..n]).unwrap();
        assert_eq!(back.sack.as_slice(), &o.sack.as_slice()[..3]);
        o.timestamps = None;
        assert_eq!(o.len(), 36, "four alone");
    }

    #[test]
    fn short_headers_and_offsets_are_refused() {
        for cut in 0..40 {
            assert!(TcpPacket::new_checked(&LINUX_SYN[..cut]).is_err(), "cut at {cut}");
        }
        let mut low = LINUX_SYN;
        low[12] = 0x40;
        assert!(matches!(TcpPacket::new_checked(&low[..]), Err(WireError::Malformed(..))));
    }

    use super::strategies::options;

    proptest! {
        #[test]
        fn emit_then_parse_gives_back_the_repr(
            src_port in any::<u16>(), dst_port in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
            flags in any::<u8>(), window in any::<u16>(), urgent in any::<u16>(), options in options(),
            payload in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let repr = TcpRepr { src_port, dst_port, seq, ack, flags: flags | ACK, window, urgent, options, payload_len: payload.len() };
            let mut buf = vec![0u8; repr.buffer_len()];
            buf[repr.header_len()..].copy_from_slice(&payload);
            let pseudo = pseudo_header_v4(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 19, 0, 1), ip_proto::TCP, buf.len() as u32);
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), pseudo);
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum(pseudo));
            prop_assert_eq!(TcpRepr::parse(&packet).unwrap(), repr);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }
    }
}
