//! Small helpers NF authors keep needing: timestamp and flag formatting, protocol names, a
//! buffered line writer for an NF's output file, argument checks, a cursor that finds the
//! stream bytes an NF missed, per-flow state by the host's dense flow references
//! ([`FlowMap`]), and what an NF's unit tests need to create and drive it without mbox
//! ([`testing`]). Nothing here crosses the ABI boundary.

use crate::events::{Event, FlowRef};
use crate::nf::{Host, PublishStatus};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// `seconds.nanoseconds` since the epoch, as tshark prints `frame.time_epoch`.
pub fn ts_epoch(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// ISO 8601 in UTC with microseconds, as Suricata's eve.json writes `timestamp`
/// (e.g. `2016-08-02T02:19:33.025824+0000`).
pub fn ts_iso8601(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+0000", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// TCP flags as letters in the order S A F R P U (e.g. `SAFP`), or `-` for none.
pub fn tcp_flag_letters(flags: u8) -> String {
    use crate::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
    const LETTERS: [(u8, char); 6] = [(SYN, 'S'), (ACK, 'A'), (FIN, 'F'), (RST, 'R'), (PSH, 'P'), (URG, 'U')];
    let s: String = LETTERS.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, c)| *c).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// The name of an IP protocol as eve.json writes it (`TCP`, `UDP`, `ICMP`, ... or the number).
pub fn proto_name(proto: u8) -> String {
    use crate::ip_proto::{ESP, GRE, ICMP, ICMPV6, IGMP, SCTP, TCP, UDP};
    match proto {
        ICMP => "ICMP".into(),
        IGMP => "IGMP".into(),
        TCP => "TCP".into(),
        UDP => "UDP".into(),
        GRE => "GRE".into(),
        ESP => "ESP".into(),
        ICMPV6 => "IPv6-ICMP".into(),
        SCTP => "SCTP".into(),
        other => other.to_string(),
    }
}

/// A buffered writer of text lines to a file, or to standard output for `-`. The first write
/// error stops the writing and is kept for [`LineWriter::finish`] to report: an NF's
/// `on_event` has no error to return, its `on_finish` does.
pub struct LineWriter {
    out: Box<dyn Write + Send>,
    error: Option<String>,
}

impl LineWriter {
    /// Opens `path` (created, and truncated unless `append`), or standard output when `path`
    /// is `-`. Pass [`NfInit::replacing`](crate::NfInit::replacing) as `append`: an instance
    /// that replaces another on a reload continues its output.
    pub fn open(path: &str, append: bool) -> io::Result<LineWriter> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(BufWriter::with_capacity(1 << 16, io::stdout()))
        } else {
            if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(path)?;
            Box::new(BufWriter::with_capacity(1 << 16, file))
        };
        Ok(LineWriter { out, error: None })
    }

    /// Writes `line` and a newline (nothing after a write error).
    pub fn line(&mut self, line: &str) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|()| self.out.write_all(b"\n")) {
                self.error = Some(format!("writing the output: {e}"));
            }
        }
    }

    /// Flushes what is buffered (a good thing to do when the NF goes idle).
    pub fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(format!("flushing the output: {e}"));
            }
        }
    }

    /// Flushes, and reports the first error the writer met.
    pub fn finish(&mut self) -> Result<(), String> {
        self.flush();
        self.error.take().map_or(Ok(()), Err)
    }
}

/// Publications an NF could not hand over yet because the host's queue for them was full (its
/// subscribers lag), kept in order and retried before anything newer: a burst is delayed, not
/// lost. Bounded: beyond `limit` waiting events, new ones are dropped and counted.
pub struct PublishQueue<T: Event + Copy> {
    waiting: std::collections::VecDeque<T>,
    limit: usize,
    /// Events dropped because `limit` events were already waiting.
    pub dropped: u64,
}

impl<T: Event + Copy> PublishQueue<T> {
    pub fn new(limit: usize) -> Self {
        PublishQueue { waiting: Default::default(), limit, dropped: 0 }
    }

    /// Retries the waiting events, oldest first; true when none waits any more. Call it at the
    /// start of every event, so that waiting events go out as soon as there is room.
    pub fn retry(&mut self, host: &mut Host<'_>) -> bool {
        while let Some(event) = self.waiting.front() {
            if host.publish(event) == PublishStatus::Full {
                return false;
            }
            self.waiting.pop_front();
        }
        true
    }

    /// Publishes `event` after the events still waiting.
    pub fn publish(&mut self, host: &mut Host<'_>, event: T) {
        if self.retry(host) && host.publish(&event) != PublishStatus::Full {
            return;
        }
        if self.waiting.len() >= self.limit {
            self.dropped += 1;
        } else {
            self.waiting.push_back(event);
        }
    }

    /// Events still waiting (lost if the run ends before another event comes).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// An NF's `args` table from the config, with the checks every NF wants: unknown keys and
/// wrong types are errors that name the key.
#[derive(Debug)]
pub struct Args {
    map: serde_json::Map<String, serde_json::Value>,
}

impl Args {
    /// Parses `json` (an object), refusing keys not in `allowed`.
    pub fn parse(json: &str, allowed: &[&str]) -> Result<Args, String> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else { return Err("arguments must be a table".into()) };
        if let Some(bad) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("unknown argument `{bad}` (this NF takes: {})", allowed.join(", ")));
        }
        Ok(Args { map })
    }

    /// A string argument.
    pub fn string(&self, key: &str, default: &str) -> Result<String, String> {
        match self.map.get(key) {
            None => Ok(default.to_string()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("argument `{key}` must be a string, not {other}")),
        }
    }

    /// A non-negative integer argument.
    pub fn u64(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| format!("argument `{key}` must be a non-negative integer, not {v}")),
        }
    }

    /// A boolean argument.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| format!("argument `{key}` must be true or false, not {v}")),
        }
    }

    /// A table of strings (`{ NAME = "value", ... }`), in key order.
    pub fn string_map(&self, key: &str) -> Result<Vec<(String, String)>, String> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Object(items)) => items
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => Ok((k.clone(), s.to_string())),
                    None => Err(format!("argument `{key}.{k}` must be a string, not {v}")),
                })
                .collect(),
            Some(other) => Err(format!("argument `{key}` must be a table, not {other}")),
        }
    }

    /// A list of non-negative integers.
    pub fn u64_list(&self, key: &str) -> Result<Vec<u64>, String> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().ok_or_else(|| format!("argument `{key}` must list non-negative integers, not {v}")))
                .collect(),
            Some(other) => Err(format!("argument `{key}` must be a list, not {other}")),
        }
    }
}

/// Follows one direction of a TCP stream through `FLOW/TCP/DATA_RDY` and `FLOW/TCP/GAP` events
/// and says which bytes never reached this NF. Events name their byte range, so a range the
/// host could not deliver (with `[runtime] ring_full = "drop"`, an NF that lags loses events)
/// shows as a jump in offsets; events that were lost after the last one delivered show at the
/// flow's end, against the snapshot's `stream_bytes`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCursor {
    next: u64,
}

impl StreamCursor {
    /// Takes the range `[offset, offset + len)` of a data or gap event; returns how many bytes
    /// before it this NF never got (0 when nothing was lost).
    pub fn advance(&mut self, offset: u64, len: u64) -> u64 {
        let lost = offset.saturating_sub(self.next);
        self.next = self.next.max(offset.saturating_add(len));
        lost
    }

    /// The flow ended with `stream_bytes` bytes accounted for in this direction (the
    /// TERMINATE event's `TcpSideSnapshot::stream_bytes`); returns the bytes lost at the end.
    pub fn finish(&mut self, stream_bytes: u64) -> u64 {
        self.advance(stream_bytes, 0)
    }

    /// The next offset expected.
    pub fn next(&self) -> u64 {
        self.next
    }
}

/// An NF's state per flow, by the dense reference every event carries (`FlowRef::shard` and
/// `slot`): a table per shard, grown as slots are used (never past the flow table's size), each
/// entry tagged with its flow's id so that a slot a later flow reuses is told apart. Lookups are
/// an index and a compare: no hashing, no allocation once the table has grown.
#[derive(Debug, Clone)]
pub struct FlowMap<T> {
    shards: Vec<Vec<Option<(u64, T)>>>,
    flow_slots: usize,
}

impl<T> FlowMap<T> {
    /// For `shards` shards of `flow_slots` slots each (`NfInit::shards`, `NfInit::flow_slots`).
    pub fn new(shards: usize, flow_slots: usize) -> FlowMap<T> {
        FlowMap { shards: (0..shards).map(|_| Vec::new()).collect(), flow_slots }
    }

    /// Where `flow` lives, if it is a flow within the bounds.
    fn index(&self, flow: &FlowRef) -> Option<(usize, usize)> {
        let (shard, slot) = (usize::from(flow.shard), flow.slot as usize);
        (flow.is_some() && shard < self.shards.len() && slot < self.flow_slots).then_some((shard, slot))
    }

    /// `flow`'s state, if it has some (not a previous flow's of the same slot).
    pub fn get(&self, flow: &FlowRef) -> Option<&T> {
        let (shard, slot) = self.index(flow)?;
        match self.shards[shard].get(slot)? {
            Some((id, state)) if *id == flow.id => Some(state),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, flow: &FlowRef) -> Option<&mut T> {
        let (shard, slot) = self.index(flow)?;
        match self.shards[shard].get_mut(slot)? {
            Some((id, state)) if *id == flow.id => Some(state),
            _ => None,
        }
    }

    /// `flow`'s state, made by `make` when it has none (a previous flow's in the slot is
    /// dropped); `None` for an event of no flow, or a reference out of bounds.
    pub fn get_or_insert_with(&mut self, flow: &FlowRef, make: impl FnOnce() -> T) -> Option<&mut T> {
        let entry = self.entry(flow)?;
        if !matches!(entry, Some((id, _)) if *id == flow.id) {
            *entry = Some((flow.id, make()));
        }
        entry.as_mut().map(|(_, state)| state)
    }

    /// Sets `flow`'s state (saved state given back after a reload, say); false when out of
    /// bounds.
    pub fn insert(&mut self, flow: &FlowRef, state: T) -> bool {
        let Some(entry) = self.entry(flow) else { return false };
        *entry = Some((flow.id, state));
        true
    }

    /// `flow`'s slot, the table grown to hold it.
    fn entry(&mut self, flow: &FlowRef) -> Option<&mut Option<(u64, T)>> {
        let (shard, slot) = self.index(flow)?;
        let table = &mut self.shards[shard];
        if table.len() <= slot {
            // Amortised: the capacity doubles, the length stays within the flow table's.
            table.resize_with(slot + 1, || None);
        }
        Some(&mut table[slot])
    }

    /// Takes `flow`'s state away (at its `TERMINATE`, say).
    pub fn remove(&mut self, flow: &FlowRef) -> Option<T> {
        let (shard, slot) = self.index(flow)?;
        let entry = self.shards[shard].get_mut(slot)?;
        match entry {
            Some((id, _)) if *id == flow.id => entry.take().map(|(_, state)| state),
            _ => None,
        }
    }

    /// Every flow with state: (shard, slot, id) and the state.
    pub fn iter(&self) -> impl Iterator<Item = ((u16, u32, u64), &T)> {
        self.shards.iter().enumerate().flat_map(|(shard, table)| {
            table.iter().enumerate().filter_map(move |(slot, e)| e.as_ref().map(|(id, s)| ((shard as u16, slot as u32, *id), s)))
        })
    }

    /// Shards and slots per shard it was made for.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    pub fn flow_slots(&self) -> usize {
        self.flow_slots
    }
}

/// For an NF's own unit tests, without mbox: the `NfInit` to create it with and a host whose
/// calls do nothing (publications refused as undeclared, unsubscriptions answered `NoFlow`). A
/// test that needs a host answering requests passes its own `publish` to [`testing::calls`].
pub mod testing {
    use crate::abi_stable::std_types::{RSlice, RStr};
    use crate::event_type::EventType;
    use crate::events::{EventHeader, FlowRef};
    use crate::nf::{HostCalls, PublishStatus, UnsubscribeStatus};
    use crate::plugin::NfInit;
    use std::ffi::c_void;

    /// What the host gives a new NF: its instance name, its arguments as JSON, `shards` shards
    /// of `flow_slots` flow slots; no registered types.
    pub fn init<'a>(instance: &'a str, args_json: &'a str, shards: u32, flow_slots: u32) -> NfInit<'a> {
        NfInit {
            instance: RStr::from_str(instance),
            args_json: RStr::from_str(args_json),
            nf_number: 1,
            shards,
            flow_slots,
            types: RSlice::from_slice(&[]),
            replacing: false,
        }
    }

    /// A publish call that refuses everything as undeclared.
    ///
    /// # Safety
    /// None needed: it reads none of its arguments (unsafe only to fit `HostCalls`).
    pub unsafe extern "C" fn publish_nothing(_: *mut c_void, _: *const EventHeader, _: u32) -> PublishStatus {
        PublishStatus::NotDeclared
    }

    /// An unsubscribe call that answers `NoFlow`.
    ///
    /// # Safety
    /// None needed: it reads none of its arguments (unsafe only to fit `HostCalls`).
    pub unsafe extern "C" fn unsubscribe_nothing(_: *mut c_void, _: &FlowRef, _: EventType) -> UnsubscribeStatus {
        UnsubscribeStatus::NoFlow
    }

    /// Host calls with `publish` (and `state`, what it gets as its first argument), and
    /// unsubscriptions answered `NoFlow`; `Host::new(&mut calls)` makes the `Host` an event
    /// takes.
    ///
    /// # Safety
    /// `publish` must treat `state` as what it is, and `state` must outlive the calls.
    pub unsafe fn calls(
        state: *mut c_void,
        publish: unsafe extern "C" fn(*mut c_void, *const EventHeader, u32) -> PublishStatus,
    ) -> HostCalls {
        // SAFETY: the caller's contract.
        unsafe { HostCalls::new(state, publish, unsubscribe_nothing) }
    }

    /// Host calls that do nothing.
    pub fn null_calls() -> HostCalls {
        // SAFETY: neither call reads its state.
        unsafe { calls(std::ptr::null_mut(), publish_nothing) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(shard: u16, slot: u32, id: u64) -> FlowRef {
        FlowRef { id, slot, shard, dir: 0, _reserved: 0 }
    }

    #[test]
    fn a_flow_map_tells_a_slots_flows_apart_and_stays_in_bounds() {
        let mut m: FlowMap<u32> = FlowMap::new(2, 100);
        assert_eq!(m.get(&flow(0, 5, 7)), None);
        *m.get_or_insert_with(&flow(0, 5, 7), || 1).unwrap() += 1;
        assert_eq!(m.get(&flow(0, 5, 7)), Some(&2));
        assert_eq!(m.get(&flow(1, 5, 7)), None, "another shard");
        // The slot reused by a later flow: the old state is not its.
        assert_eq!(m.get(&flow(0, 5, 8)), None);
        assert_eq!(m.get_or_insert_with(&flow(0, 5, 8), || 10), Some(&mut 10));
        assert_eq!(m.remove(&flow(0, 5, 7)), None, "gone with its slot");
        assert!(m.insert(&flow(1, 99, 3), 4));
        assert!(m.insert(&flow(1, 99, 3), 5), "replaced");
        assert_eq!(m.iter().collect::<Vec<_>>(), [((0, 5, 8), &10), ((1, 99, 3), &5)]);
        assert_eq!(m.remove(&flow(0, 5, 8)), Some(10));
        // No flow, another shard count, a slot past the table: refused, not grown.
        assert!(m.get_or_insert_with(&flow(0, 1, 0), || 0).is_none(), "an event of no flow");
        assert!(m.get_or_insert_with(&flow(2, 1, 1), || 0).is_none());
        assert!(!m.insert(&flow(0, 100, 1), 0));
        assert_eq!(m.iter().count(), 1);
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts_epoch(1_470_104_373_025_824_000), "1470104373.025824000");
        assert_eq!(ts_iso8601(1_470_104_373_025_824_000), "2016-08-02T02:19:33.025824+0000");
        assert_eq!(ts_iso8601(0), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(ts_iso8601(951_782_400_000_000_000), "2000-02-29T00:00:00.000000+0000");
    }

    #[test]
    fn args_name_the_bad_key() {
        let a = Args::parse(r#"{"output":"x","n":3}"#, &["output", "n"]).unwrap();
        assert_eq!(a.string("output", "-").unwrap(), "x");
        assert_eq!(a.u64("n", 0).unwrap(), 3);
        assert_eq!(a.u64("m", 7).unwrap(), 7);
        assert!(Args::parse(r#"{"outptu":"x"}"#, &["output"]).unwrap_err().contains("`outptu`"));
        assert!(a.u64("output", 0).unwrap_err().contains("`output`"));
        let a = Args::parse(r#"{"on":true,"vars":{"HOME_NET":"any"}}"#, &["on", "vars"]).unwrap();
        assert!(a.bool("on", false).unwrap() && !a.bool("off", false).unwrap());
        assert_eq!(a.string_map("vars").unwrap(), [("HOME_NET".to_string(), "any".to_string())]);
        assert!(a.bool("vars", false).is_err() && a.string_map("on").is_err());
    }

    #[test]
    fn a_stream_cursor_finds_the_missing_ranges() {
        let mut c = StreamCursor::default();
        assert_eq!(c.advance(0, 100), 0);
        assert_eq!(c.advance(100, 50), 0, "a gap event's range counts as seen");
        assert_eq!(c.advance(400, 10), 250, "events for [150, 400) were lost");
        assert_eq!(c.next(), 410);
        assert_eq!(c.finish(410), 0);
        assert_eq!(c.finish(500), 90, "events after the last one were lost");
    }

    #[test]
    fn flags() {
        assert_eq!(tcp_flag_letters(0x02 | 0x10), "SA");
        assert_eq!(tcp_flag_letters(0x3f), "SAFRPU");
        assert_eq!(tcp_flag_letters(0), "-");
    }
}
