//! The reassembler driven by arbitrary segment and acknowledgment sequences: whatever arrives,
//! reported ranges are contiguous (data and gaps cover each offset once), kept segments are all
//! let go, `finish` stays within the events it promised, and nothing panics. Reassembly may stop
//! midway (the flow's last subscriber left): from then on segments are only counted, and
//! nothing more is reported.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mbox_stack::tcp::stream::{Source, Stream, StreamLimits, StreamSink, StreamSinkKeep};

struct Check {
    next: u64,
    stopped: bool,
    events: usize,
    live: Vec<bool>,
    current_len: u32,
    lens: Vec<u32>,
}

impl StreamSinkKeep for Check {
    fn keep(&mut self) -> Option<u32> {
        if self.live.iter().filter(|l| **l).count() >= 8 {
            return None;
        }
        self.live.push(true);
        self.lens.push(self.current_len);
        Some(self.live.len() as u32 - 1)
    }
    fn unkeep(&mut self, token: u32) {
        assert!(std::mem::take(&mut self.live[token as usize]), "let go twice");
    }
}

impl StreamSink for Check {
    fn data(&mut self, _dir: u8, offset: u64, len: u32, source: Source) {
        assert!(!self.stopped, "data after reassembly stopped");
        assert_eq!(offset, self.next);
        self.events += 1;
        let (start, available) = match source {
            Source::Current { start } => (start, self.current_len),
            Source::Kept { token, start } => {
                assert!(self.live[token as usize], "data from a segment let go");
                (start, self.lens[token as usize])
            }
        };
        assert!(start + len <= available, "range inside its segment's captured payload");
        self.next += u64::from(len);
    }
    fn gap(&mut self, _dir: u8, offset: u64, len: u64, _reason: u8) {
        assert!(!self.stopped, "gap after reassembly stopped");
        assert_eq!(offset, self.next);
        self.events += 1;
        self.next += len;
    }
}

fuzz_target!(|input: &[u8]| {
    let mut stream = Stream::default();
    let mut check = Check { next: 0, stopped: false, events: 0, live: Vec::new(), current_len: 0, lens: Vec::new() };
    let limits = StreamLimits { max_kept: 6, max_distance: 1 << 16 };
    // Each 8-byte record: kind, seq (u32, small range around a base close to the wrap, so
    // sequence numbers wrap around), len (u16), captured.
    for r in input.chunks_exact(8) {
        let seq = (u32::MAX - 30_000).wrapping_add(u32::from_le_bytes([r[1], r[2], r[3], r[7]]) % 70_000);
        let len = u32::from(u16::from_le_bytes([r[4], r[5]])) % 3000;
        let captured = len.min(u32::from(r[6]) * 16);
        let syn = r[0] & 0x10 != 0;
        match r[0] % 4 {
            0 | 3 if check.stopped => stream.track(seq, syn, len),
            0 => {
                check.current_len = captured;
                stream.segment(0, seq, syn, len, captured, limits, &mut check);
            }
            1 => stream.peer_ack(0, seq, &mut check),
            2 if r[0] & 0xe0 == 0xe0 && !check.stopped => {
                stream.abandon(&mut check);
                check.stopped = true;
            }
            2 => {}
            _ => {
                check.current_len = captured;
                stream.segment(0, seq.wrapping_sub(5), false, len, captured, limits, &mut check);
            }
        }
    }
    // The stack reserves event room for `finish` from this bound: it must hold.
    let (promised, before) = (stream.events_to_finish(), check.events);
    stream.finish(0, &mut check);
    assert!(check.events - before <= promised, "finish emitted {} events, promised {promised}", check.events - before);
    assert!(check.live.iter().all(|l| !l), "every kept segment was let go");
});
