//! Captures replayed one after the other as one input (`[input] pcap`, `repeat`, `retime`; see
//! docs/config.md): a [`Source`] for the input thread, and what `mbox merge` reads.

use super::capture::{CaptureError, CaptureReader};
use super::device::{Next, Source};
use super::pool::PacketPool;
use crate::config::InputConfig;
use mbox_stack::wire::LinkType;
use std::path::PathBuf;

/// Captures read one after the other, as one input (see `[input]` in docs/config.md).
pub struct Captures {
    reader: CaptureReader,
    /// Every file, and the position of the current one in the sequence of `repeat` passes.
    paths: Vec<PathBuf>,
    position: usize,
    repeat: usize,
    description: String,
    /// Bytes of the files already read, and of all passes over all files (for progress).
    done_bytes: u64,
    total_bytes: u64,
    /// Packets skipped by the readers of the files already read.
    skipped_before: u64,
    first_link: LinkType,
    /// `retime`: the pause before each file, the shift applied to the current file's times
    /// (set at its first packet), and the last time handed out (`None` before the first packet).
    retime_ns: Option<u64>,
    shift_ns: Option<i128>,
    last_ts_ns: Option<u64>,
}

impl Captures {
    /// Opens the captures of `[input]`. Every file is opened (and its header checked) here, so
    /// a missing or foreign file stops the run before it starts.
    pub fn open(input: &InputConfig) -> Result<Captures, CaptureError> {
        let (first, rest) = input.pcap.split_first().expect("validated: at least one capture");
        let reader = CaptureReader::open(first)?;
        let mut file_bytes = reader.progress().1;
        for path in rest {
            file_bytes += CaptureReader::open(path)?.progress().1;
        }
        let repeat = input.repeat.max(1) as usize;
        let mut description = match rest.len() {
            0 => first.display().to_string(),
            n => format!("{} and {n} more captures", first.display()),
        };
        if repeat > 1 {
            description.push_str(&format!(", {repeat} times"));
        }
        let first_link = reader.first_link().unwrap_or(LinkType::Ethernet);
        Ok(Captures {
            reader,
            paths: input.pcap.clone(),
            position: 0,
            repeat,
            description,
            done_bytes: 0,
            total_bytes: file_bytes.saturating_mul(repeat as u64),
            skipped_before: 0,
            first_link,
            retime_ns: input.retime.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            shift_ns: None,
            last_ts_ns: None,
        })
    }

    /// Which pass over the captures the last packet came from.
    pub fn pass(&self) -> u32 {
        (self.position / self.paths.len()) as u32
    }

    /// Reads the next packet into `buf`: (link, wire length, timestamp), `None` at the end.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<(LinkType, u32, u64)>, CaptureError> {
        loop {
            if let Some(m) = self.reader.next_packet(buf)? {
                return Ok(Some((m.link, m.wire_len, self.retimed(m.ts_ns))));
            }
            self.position += 1;
            if self.position >= self.paths.len() * self.repeat {
                return Ok(None);
            }
            let next = CaptureReader::open(&self.paths[self.position % self.paths.len()])?;
            let done = std::mem::replace(&mut self.reader, next);
            self.done_bytes += done.progress().1;
            self.skipped_before += done.skipped_unsupported;
            self.shift_ns = None;
        }
    }

    /// A packet's time, moved when `retime` is on: the file's first packet comes `retime` after
    /// the previous file's last, and the rest keep their distance from it.
    fn retimed(&mut self, ts_ns: u64) -> u64 {
        let Some(pause) = self.retime_ns else { return ts_ns };
        let last = self.last_ts_ns;
        let shift = *self.shift_ns.get_or_insert_with(|| match last {
            None => 0,
            Some(last) => i128::from(last) + i128::from(pause) - i128::from(ts_ns),
        });
        let ts = (i128::from(ts_ns) + shift).clamp(0, i128::from(u64::MAX)) as u64;
        self.last_ts_ns = Some(last.map_or(ts, |l| l.max(ts)));
        ts
    }
}

impl Source for Captures {
    fn next_into(&mut self, pool: &PacketPool, idx: u32) -> Result<Next, CaptureError> {
        // SAFETY: the caller holds `idx` and has not handed it on.
        let buf = unsafe { pool.buf_mut(idx) };
        Ok(match self.next(buf)? {
            Some((link, wire_len, ts_ns)) => Next::Packet { link, len: buf.len() as u32, wire_len, ts_ns, port: 0 },
            None => Next::End,
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    /// The link type an output pcap should use (the first capture's).
    fn link(&self) -> LinkType {
        self.first_link
    }

    /// Bytes of the captures read, and of all passes over all of them.
    fn progress(&self) -> (u64, u64) {
        (self.done_bytes + self.reader.progress().0, self.total_bytes)
    }

    fn skipped(&self) -> u64 {
        self.skipped_before + self.reader.skipped_unsupported
    }
}
