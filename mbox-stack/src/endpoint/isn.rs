//! Initial sequence numbers (RFC 6528): a 4 µs clock plus a keyed hash of the connection's
//! addresses and ports, so that a connection's numbers cannot be guessed from another's; and
//! SYN cookies (RFC 4987), the same hash carrying the MSS and a coarse time, so that a server
//! whose SYN backlog is full can answer without keeping state.

use std::hash::{Hash, Hasher};

/// A connection's addresses and ports, as the bytes the hash covers: local address and port,
/// remote address and port (IPv4 addresses as IPv4-mapped IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourTuple {
    pub local: [u8; 16],
    pub local_port: u16,
    pub remote: [u8; 16],
    pub remote_port: u16,
}

/// The secret the numbers are keyed with: per shard, from the system's randomness at start.
/// The hash is SipHash-2-4, a keyed pseudorandom function (RFC 6528 asks for a cryptographic
/// one; std's `SipHasher` is deprecated as a default hasher, not as a PRF).
#[derive(Debug, Clone, Copy)]
pub struct IsnSecret {
    keys: (u64, u64),
}

/// MSS values a cookie can carry (2 bits), as in Linux's table: the largest not above the
/// peer's is chosen.
const COOKIE_MSS: [u16; 4] = [536, 1300, 1440, 1460];

/// Whether a SYN announcing `mss` (536 when it announces none, RFC 9293 3.7.1) can be answered
/// with a cookie: the cookie carries an MSS from a table whose smallest entry is 536, and
/// segments larger than the peer's MSS must not be sent (RFC 9293 3.7.1). A host whose SYN
/// backlog is full refuses (drops, and counts) a SYN that does not fit, as it does any SYN
/// it has no room for; the peer retries it. [`IsnSecret::cookie`] for such a SYN gives an ISN
/// that [`IsnSecret::check_cookie`] never accepts, so no connection comes of it anyway.
pub fn cookie_mss_fits(mss: u16) -> bool {
    mss >= COOKIE_MSS[0]
}

/// A cookie's time counter ticks every 64 s (RFC 4987 3.6): a cookie older than two ticks is
/// refused.
const COOKIE_TICK_NS: u64 = 64_000_000_000;

impl IsnSecret {
    pub fn new(seed: u64) -> IsnSecret {
        IsnSecret { keys: (seed, seed.rotate_left(32) ^ 0x6a09_e667_f3bc_c908) }
    }

    /// A seed from the system (the address of a fresh allocation and the clock are not secret
    /// enough: read the kernel's randomness, falling back to the clock).
    pub fn from_system() -> IsnSecret {
        let mut key = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key));
        if read.is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            key = now.to_le_bytes();
        }
        let word = |i: usize| u64::from_le_bytes(key[i..i + 8].try_into().unwrap_or([0; 8]));
        IsnSecret { keys: (word(0), word(8)) }
    }

    fn hash(&self, t: &FourTuple, extra: u64) -> u64 {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.keys.0, self.keys.1);
        (t, extra).hash(&mut h);
        h.finish()
    }

    /// RFC 6528: ISN = M + F(4-tuple, secret), M a 4 µs timer (`now_ns` any monotonic clock).
    pub fn isn(&self, t: &FourTuple, now_ns: u64) -> u32 {
        ((now_ns / 4_000) as u32).wrapping_add(self.hash(t, 0) as u32)
    }

    /// A SYN cookie for a SYN from the tuple's remote side with sequence number `peer_isn`
    /// and MSS `mss`: the ISN to answer with (RFC 4987 3.6: the top 5 bits a time counter, the
    /// next 2 the MSS's index, the rest a hash of both, the tuple and the peer's ISN). For an
    /// MSS below the table ([`cookie_mss_fits`] false: the host should not answer), the hash is
    /// inverted: the cookie never checks out, rather than carrying an MSS above the peer's.
    pub fn cookie(&self, t: &FourTuple, peer_isn: u32, mss: u16, now_ns: u64) -> u32 {
        let tick = (now_ns / COOKIE_TICK_NS) as u32 & 0x1f;
        let index = COOKIE_MSS.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        let mut hash = self.cookie_hash(t, peer_isn, tick, index);
        if !cookie_mss_fits(mss) {
            hash ^= 0x01ff_ffff;
        }
        tick << 27 | index << 25 | hash
    }

    fn cookie_hash(&self, t: &FourTuple, peer_isn: u32, tick: u32, index: u32) -> u32 {
        let extra = 1u64 << 63 | u64::from(peer_isn) << 8 | u64::from(tick) << 3 | u64::from(index);
        self.hash(t, extra) as u32 & 0x01ff_ffff
    }

    /// Checks the ACK completing a cookie handshake: `ack` acknowledges our cookie + 1, `seq`
    /// is the peer's ISN + 1. The MSS the cookie carried, or `None` for a forged or stale one.
    pub fn check_cookie(&self, t: &FourTuple, seq: u32, ack: u32, now_ns: u64) -> Option<u16> {
        let cookie = ack.wrapping_sub(1);
        let (tick, index) = (cookie >> 27, (cookie >> 25) & 0x3);
        let now_tick = (now_ns / COOKIE_TICK_NS) as u32 & 0x1f;
        if now_tick.wrapping_sub(tick) & 0x1f > 1 {
            return None;
        }
        let peer_isn = seq.wrapping_sub(1);
        (cookie & 0x01ff_ffff == self.cookie_hash(t, peer_isn, tick, index)).then(|| COOKIE_MSS[index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple { local: [1; 16], local_port: 80, remote: [2; 16], remote_port: port }
    }

    #[test]
    fn isns_advance_with_the_clock_and_differ_between_connections_rfc6528() {
        let s = IsnSecret::new(1);
        let a = s.isn(&tuple(1000), 0);
        assert_eq!(s.isn(&tuple(1000), 4_000_000), a.wrapping_add(1000), "one per 4 µs");
        assert_ne!(s.isn(&tuple(1001), 0), a);
        assert_ne!(IsnSecret::new(2).isn(&tuple(1000), 0), a, "keyed");
    }

    #[test]
    fn a_cookie_checks_out_with_its_mss_and_expires_rfc4987() {
        let s = IsnSecret::new(9);
        let t = tuple(5000);
        let now = 10 * COOKIE_TICK_NS + 5;
        let c = s.cookie(&t, 77, 1460, now);
        assert_eq!(s.check_cookie(&t, 78, c.wrapping_add(1), now), Some(1460));
        assert_eq!(s.check_cookie(&t, 78, c.wrapping_add(1), now + COOKIE_TICK_NS), Some(1460), "one tick later");
        assert_eq!(s.check_cookie(&t, 78, c.wrapping_add(1), now + 2 * COOKIE_TICK_NS), None, "too old");
        assert_eq!(s.check_cookie(&t, 79, c.wrapping_add(1), now), None, "another peer ISN");
        assert_eq!(s.check_cookie(&tuple(5001), 78, c.wrapping_add(1), now), None, "another tuple");
        assert_eq!(s.check_cookie(&t, 78, c.wrapping_add(2), now), None);
        let small = s.cookie(&t, 77, 600, now);
        assert_eq!(s.check_cookie(&t, 78, small.wrapping_add(1), now), Some(536));
    }

    /// RFC 9293 3.7.1: no segment larger than the peer's MSS. A cookie can carry 536 at least:
    /// a SYN announcing less cannot be answered with one (the host is told so), and a cookie
    /// made for it anyway never opens a connection (which would send 536-byte segments).
    #[test]
    fn rfc9293_3_7_1_a_cookie_never_carries_more_than_the_peers_mss() {
        assert!(!cookie_mss_fits(0) && !cookie_mss_fits(100) && !cookie_mss_fits(535));
        assert!(cookie_mss_fits(536) && cookie_mss_fits(1460) && cookie_mss_fits(9000));
        let s = IsnSecret::new(9);
        let t = tuple(5000);
        let now = 3 * COOKIE_TICK_NS;
        for mss in [0, 88, 535] {
            let c = s.cookie(&t, 77, mss, now);
            assert_eq!(s.check_cookie(&t, 78, c.wrapping_add(1), now), None, "MSS {mss}");
        }
        let c = s.cookie(&t, 77, 536, now);
        assert_eq!(s.check_cookie(&t, 78, c.wrapping_add(1), now), Some(536));
    }
}
