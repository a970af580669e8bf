//! IPv4/IPv6 fragment reassembly, bounded in datagrams, size and time.
//!
//! Fragments are copied into a per-datagram buffer (fragments are rare; the common path never
//! comes here). When the last hole fills, the buffer holds a complete IP datagram — the first
//! fragment's header, fixed up, followed by the whole payload — which the stack parses like any
//! packet and hands to NFs as one event. Overlapping fragments keep the bytes that arrived first
//! (the policy of most end hosts since RFC 5722 made overlaps suspect).
//!
//! Buffers are allocated on first use and then reused: a completed datagram stays held while
//! events point at it, and [`Reassembler::release`] frees it when they retire.

use crate::wire::{FragmentInfo, Parsed};

/// Largest IP payload a datagram can carry.
const MAX_PAYLOAD: usize = 65535;
/// Largest IP header kept (IPv4 with options; IPv6 keeps its 40-byte base header).
const MAX_HEADER: usize = 60;
const UNITS: usize = MAX_PAYLOAD.div_ceil(8);

/// Counters of the reassembler, reported in the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FragmentStats {
    /// Fragments received.
    pub fragments: u64,
    /// Datagrams completed.
    pub reassembled: u64,
    /// Datagrams abandoned because their holes did not fill within the timeout.
    pub timed_out: u64,
    /// Fragments dropped because every reassembly slot was busy.
    pub no_slot: u64,
    /// Fragments dropped because they reach beyond 65,535 bytes or were not fully captured.
    pub invalid: u64,
}

/// What adding a fragment produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// Stored; holes remain.
    Incomplete,
    /// The datagram in `slot` is complete: `len` bytes from its IP header on.
    Complete { slot: u32, len: usize },
    /// Not stored (see the counters).
    Dropped,
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct DatagramKey {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    version: u8,
}

struct Datagram {
    key: DatagramKey,
    in_use: bool,
    /// Completed and lent to events: not reusable until released.
    held: bool,
    first_ts: u64,
    header_len: usize,
    /// Payload length, known once the last fragment (more = false) arrived.
    total: Option<usize>,
    /// End of the furthest fragment received.
    max_end: usize,
    covered_units: usize,
    covered: Box<[u64]>,
    buf: Vec<u8>,
}

impl Datagram {
    fn new() -> Datagram {
        Datagram {
            key: DatagramKey::default(),
            in_use: false,
            held: false,
            first_ts: 0,
            header_len: 0,
            total: None,
            max_end: 0,
            covered_units: 0,
            covered: Box::new([]),
            buf: Vec::new(),
        }
    }

    fn reset(&mut self, key: DatagramKey, now: u64) {
        if self.buf.is_empty() {
            // First use of this slot: allocate once, keep for its lifetime.
            self.buf = vec![0; MAX_HEADER + MAX_PAYLOAD];
            self.covered = vec![0u64; UNITS.div_ceil(64)].into_boxed_slice();
        }
        self.covered.fill(0);
        self.key = key;
        self.in_use = true;
        self.held = false;
        self.first_ts = now;
        self.header_len = 0;
        self.total = None;
        self.max_end = 0;
        self.covered_units = 0;
    }
}

/// The reassembly state of one shard.
pub struct Reassembler {
    slots: Vec<Datagram>,
    timeout_ns: u64,
    pub stats: FragmentStats,
}

impl Reassembler {
    /// Bytes a reassembler of `max_datagrams` slots allocates when it is made; each slot's
    /// buffer (64 KiB) comes on its first use.
    pub fn footprint(max_datagrams: usize) -> usize {
        max_datagrams * std::mem::size_of::<Datagram>()
    }

    /// Bytes a slot's buffers take once it has been used.
    pub const SLOT_BUFFER_BYTES: usize = MAX_HEADER + MAX_PAYLOAD + UNITS.div_ceil(64) * 8;

    /// At most `max_datagrams` in progress (or held) at once; `timeout_ns` of packet time.
    pub fn new(max_datagrams: usize, timeout_ns: u64) -> Reassembler {
        Reassembler { slots: (0..max_datagrams).map(|_| Datagram::new()).collect(), timeout_ns, stats: FragmentStats::default() }
    }

    /// Adds the fragment `data` (a whole frame, parsed as `p`, whose fragment fields are `f`).
    pub fn add(&mut self, data: &[u8], p: &Parsed, f: &FragmentInfo, now: u64) -> FragmentOutcome {
        self.stats.fragments += 1;
        let start = f.offset as usize;
        let len = f.data_len as usize;
        let end = start + len;
        let captured = data.get(f.data_offset as usize..).map_or(0, <[u8]>::len);
        // An IPv4 datagram's header counts in its 16-bit total length; IPv6's does not.
        let max_payload = if p.ip_version == 4 { MAX_PAYLOAD - f.header_len as usize } else { MAX_PAYLOAD };
        if end > max_payload || captured < len || (f.more && len % 8 != 0) {
            self.stats.invalid += 1;
            return FragmentOutcome::Dropped;
        }
        // RFC 791 keys IPv4 datagrams by protocol too; RFC 8200 keys IPv6 by addresses and id.
        let proto = if p.ip_version == 4 { p.ip_proto } else { 0 };
        let key = DatagramKey { src: p.src, dst: p.dst, id: f.id, proto, version: p.ip_version };
        let Some(slot) = self.slot_for(key, now) else {
            self.stats.no_slot += 1;
            return FragmentOutcome::Dropped;
        };
        let d = &mut self.slots[slot];
        // Fragments that contradict the datagram's end (beyond it, or a second, different
        // last fragment) are refused: they are malformed or an evasion attempt.
        let contradicts = match d.total {
            Some(total) => end > total || (!f.more && end != total),
            None => !f.more && end < d.max_end,
        };
        if contradicts {
            self.stats.invalid += 1;
            return FragmentOutcome::Dropped;
        }
        d.max_end = d.max_end.max(end);
        if f.offset == 0 {
            let l3 = p.l3_offset as usize;
            let header = synth_header(&data[l3..l3 + f.header_len as usize], p.ip_version);
            d.header_len = header.len();
            d.buf[MAX_HEADER - header.len()..MAX_HEADER].copy_from_slice(header);
            if p.ip_version == 6 {
                // The base header's next header becomes the one the fragment header named.
                d.buf[MAX_HEADER - 40 + 6] = data[l3 + f.header_len as usize - 8];
            }
        }
        if !f.more {
            d.total = Some(end);
        }
        // Copy unit by unit, skipping units already covered: the first copy of a byte wins.
        let payload = &data[f.data_offset as usize..f.data_offset as usize + len];
        let mut unit = start / 8;
        while unit * 8 < end {
            let bit = 1u64 << (unit % 64);
            if d.covered[unit / 64] & bit == 0 {
                d.covered[unit / 64] |= bit;
                d.covered_units += 1;
                let from = unit * 8 - start;
                let to = (from + 8).min(len);
                d.buf[MAX_HEADER + unit * 8..MAX_HEADER + unit * 8 + (to - from)].copy_from_slice(&payload[from..to]);
            }
            unit += 1;
        }
        // Every unit below the end must be covered (the count alone could include units a
        // contradicting fragment placed elsewhere; those are refused above, so it is exact).
        match d.total {
            Some(total) if d.header_len > 0 && d.covered_units == total.div_ceil(8) => {
                let header_len = d.header_len;
                finish_header(&mut d.buf[MAX_HEADER - header_len..MAX_HEADER], total, p.ip_version);
                // Move the header next to the payload so the datagram is one contiguous slice.
                d.buf.copy_within(MAX_HEADER - header_len..MAX_HEADER, 0);
                d.buf.copy_within(MAX_HEADER..MAX_HEADER + total, header_len);
                d.held = true;
                self.stats.reassembled += 1;
                FragmentOutcome::Complete { slot: slot as u32, len: header_len + total }
            }
            _ => FragmentOutcome::Incomplete,
        }
    }

    /// The completed datagram in `slot` (valid until [`Reassembler::release`]).
    pub fn datagram(&self, slot: u32, len: usize) -> &[u8] {
        &self.slots[slot as usize].buf[..len]
    }

    /// Frees a completed datagram once nothing points at it any more.
    pub fn release(&mut self, slot: u32) {
        let d = &mut self.slots[slot as usize];
        d.held = false;
        d.in_use = false;
    }

    /// Abandons datagrams whose holes have not filled within the timeout.
    pub fn expire(&mut self, now: u64) {
        for d in &mut self.slots {
            if d.in_use && !d.held && now.saturating_sub(d.first_ts) > self.timeout_ns {
                d.in_use = false;
                self.stats.timed_out += 1;
            }
        }
    }

    fn slot_for(&mut self, key: DatagramKey, now: u64) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|d| d.in_use && !d.held && d.key == key) {
            return Some(i);
        }
        self.expire(now);
        let i = self.slots.iter().position(|d| !d.in_use)?;
        self.slots[i].reset(key, now);
        Some(i)
    }
}

/// The header to put before the reassembled payload: the IPv4 header as it was, or the IPv6
/// base header (extension headers before the fragment header are dropped).
fn synth_header(ip: &[u8], version: u8) -> &[u8] {
    if version == 4 {
        &ip[..ip.len().min(MAX_HEADER)]
    } else {
        &ip[..40]
    }
}

/// Fixes lengths and fragment fields of a synthesized header for a payload of `total` bytes.
fn finish_header(h: &mut [u8], total: usize, version: u8) {
    if version == 4 {
        let len = (h.len() + total) as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h[6] &= 0x40; // keep DF, clear MF and the offset
        h[7] = 0;
        h[10] = 0;
        h[11] = 0;
        let sum = crate::wire::checksum::finish(crate::wire::checksum::sum(h));
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        h[4..6].copy_from_slice(&(total as u16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, LinkType, Packet, ParseOptions};

    /// An IPv4 fragment (raw IP) of a UDP datagram whose payload is `payload`.
    fn v4_fragment(datagram: &[u8], offset: usize, len: usize, more: bool) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        h[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        let field = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&field.to_be_bytes());
        h.extend_from_slice(&datagram[offset..offset + len]);
        h
    }

    fn udp_datagram(n: usize) -> Vec<u8> {
        let mut d = vec![0u8; 8 + n];
        d[0..2].copy_from_slice(&5353u16.to_be_bytes());
        d[2..4].copy_from_slice(&53u16.to_be_bytes());
        d[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
        for (i, b) in d[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        d
    }

    fn add(r: &mut Reassembler, frame: &[u8]) -> FragmentOutcome {
        let Ok(Packet::Ip(p)) = parse(frame, LinkType::RawIp, ParseOptions::default()) else { panic!("parse") };
        r.add(frame, &p, &p.fragment.expect("a fragment"), 0)
    }

    #[test]
    fn out_of_order_fragments_rebuild_the_datagram() {
        let d = udp_datagram(3000);
        let frags = [v4_fragment(&d, 1480, 1480, true), v4_fragment(&d, 2960, 48, false), v4_fragment(&d, 0, 1480, true)];
        let mut r = Reassembler::new(4, 1_000_000_000);
        assert_eq!(add(&mut r, &frags[0]), FragmentOutcome::Incomplete);
        assert_eq!(add(&mut r, &frags[1]), FragmentOutcome::Incomplete);
        let FragmentOutcome::Complete { slot, len } = add(&mut r, &frags[2]) else { panic!("not complete") };
        let whole = r.datagram(slot, len);
        assert_eq!(&whole[20..], &d[..]);
        let Ok(Packet::Ip(p)) = parse(whole, LinkType::RawIp, ParseOptions::default()) else { panic!() };
        assert!(p.fragment.is_none());
        assert_eq!((p.src_port, p.dst_port, p.payload_len), (5353, 53, 3000));
        assert!(crate::wire::checksum::verifies(crate::wire::checksum::sum(&whole[..20])), "header checksum is valid");
        r.release(slot);
        assert_eq!(r.stats.reassembled, 1);
    }

    #[test]
    fn fragments_that_contradict_the_end_do_not_complete_a_datagram_with_holes() {
        let d = udp_datagram(100);
        let mut r = Reassembler::new(2, 1_000_000_000);
        assert_eq!(add(&mut r, &v4_fragment(&d, 0, 8, true)), FragmentOutcome::Incomplete);
        assert_eq!(add(&mut r, &v4_fragment(&d, 64, 8, true)), FragmentOutcome::Incomplete);
        // A "last" fragment ending at 16 while data up to 72 arrived: refused.
        assert_eq!(add(&mut r, &v4_fragment(&d, 8, 8, false)), FragmentOutcome::Dropped);
        assert_eq!(r.stats.invalid, 1);
        // The real last fragment, then the hole: complete and exact.
        assert_eq!(add(&mut r, &v4_fragment(&d, 72, 36, false)), FragmentOutcome::Incomplete);
        assert_eq!(add(&mut r, &v4_fragment(&d, 8, 56, true)), FragmentOutcome::Complete { slot: 0, len: 128 });
        assert_eq!(&r.datagram(0, 128)[20..], &d[..]);
        // A fragment beyond the known end is refused.
        r.release(0);
        assert_eq!(add(&mut r, &v4_fragment(&d, 72, 36, false)), FragmentOutcome::Incomplete);
        let longer = udp_datagram(200);
        assert_eq!(add(&mut r, &v4_fragment(&longer, 104, 8, true)), FragmentOutcome::Dropped);
    }

    #[test]
    fn bounds_are_counted_drops() {
        let d = udp_datagram(100);
        let mut r = Reassembler::new(1, 10);
        assert_eq!(add(&mut r, &v4_fragment(&d, 0, 56, true)), FragmentOutcome::Incomplete);
        let mut other = v4_fragment(&d, 0, 56, true);
        other[5] = 0x99; // another datagram id: no slot left
        assert_eq!(add(&mut r, &other), FragmentOutcome::Dropped);
        assert_eq!(r.stats.no_slot, 1);
        let mut beyond = v4_fragment(&d, 56, 52, false);
        beyond[6..8].copy_from_slice(&0x1fffu16.to_be_bytes()); // offset 65528 + 52 > 65535
        assert_eq!(add(&mut r, &beyond), FragmentOutcome::Dropped);
        assert_eq!(r.stats.invalid, 1);
        r.expire(1_000);
        assert_eq!(r.stats.timed_out, 1);
    }
}
