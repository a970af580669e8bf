//! Small helpers NF authors keep needing: timestamp and flag formatting, protocol names, a
//! buffered line writer for an NF's output file, argument checks, a cursor that finds the
//! stream bytes an NF missed, per-flow state by the host's dense flow references
//! ([`FlowMap`]), a consistent-hash table for load balancers ([`Maglev`]), counter names made
//! at run time ([`static_name`]), and what an NF's unit tests need to create and drive it
//! without mbox ([`testing`]). Nothing here crosses the ABI boundary.

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
    /// The file written (`None`: standard output).
    path: Option<std::path::PathBuf>,
    error: Option<String>,
}

impl LineWriter {
    /// Opens `path` (created, and truncated unless `append`), or standard output when `path`
    /// is `-`. Pass [`NfInit::replacing`](crate::NfInit::replacing) as `append`: an instance
    /// that replaces another on a reload continues its output.
    pub fn open(path: &str, append: bool) -> io::Result<LineWriter> {
        if path == "-" {
            return Ok(LineWriter { out: Box::new(BufWriter::with_capacity(1 << 16, io::stdout())), path: None, error: None });
        }
        let path = Path::new(path);
        Ok(LineWriter { out: Self::file(path, append)?, path: Some(path.to_path_buf()), error: None })
    }

    fn file(path: &Path, append: bool) -> io::Result<Box<dyn Write + Send>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(path)?;
        Ok(Box::new(BufWriter::with_capacity(1 << 16, file)))
    }

    /// Flushes, closes the file and opens its path again, appending (created if it was moved
    /// away: log rotation). Standard output stays as it is. What was buffered goes to the old
    /// file; a failure to open keeps the old one and is returned.
    pub fn reopen(&mut self) -> Result<String, String> {
        self.flush();
        let Some(path) = &self.path else { return Ok("standard output".into()) };
        let fresh = Self::file(path, true).map_err(|e| format!("reopening {}: {e}", path.display()))?;
        self.out = fresh;
        Ok(path.display().to_string())
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

    /// A duration argument (`"90s"`, `"250ms"`, ... as [`duration_ns`] reads it), in ns, at
    /// most `max_ns`.
    pub fn duration_ns(&self, key: &str, default_ns: u64, max_ns: u64) -> Result<u64, String> {
        match self.map.get(key) {
            None => Ok(default_ns),
            Some(v) => duration_ns(v, max_ns).map_err(|e| format!("argument `{key}` {e}")),
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

    /// A string or a list of strings (`"a"` and `["a", "b"]` both work).
    pub fn strings(&self, key: &str) -> Result<Vec<String>, String> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("argument `{key}` must list strings, not {v}")))
                .collect(),
            Some(other) => Err(format!("argument `{key}` must be a string or a list of strings, not {other}")),
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

/// One direction of a TCP stream gathered until its reader can parse it (an HTTP head, which
/// `FLOW/TCP/DATA_RDY` events may cut anywhere), within `limit` bytes. Bytes that do not follow
/// what is held (a gap, or an event the NF lost, before them) start it afresh, and so does
/// reaching the limit; both are counted in [`StreamBuffer::dropped`]. [`StreamBuffer::skip`]
/// passes over bytes still to come (a body the reader does not look at).
#[derive(Debug, Clone, Default)]
pub struct StreamBuffer {
    held: Vec<u8>,
    cursor: StreamCursor,
    limit: usize,
    /// Bytes still to pass over as they come.
    skipping: u64,
    /// Bytes given up: held when a discontinuity or the limit came, or past the limit.
    pub dropped: u64,
}

impl StreamBuffer {
    pub fn new(limit: usize) -> StreamBuffer {
        StreamBuffer { limit, ..StreamBuffer::default() }
    }

    /// Takes `data`'s bytes (an event of this buffer's direction).
    pub fn push(&mut self, data: &crate::events::StreamDataEvent) {
        self.push_bytes(data.offset, data.bytes());
    }

    /// Takes `bytes`, which start at stream offset `offset` (part of an event: one cut at a
    /// depth the reader keeps to).
    pub fn push_bytes(&mut self, offset: u64, mut bytes: &[u8]) {
        if self.cursor.advance(offset, bytes.len() as u64) > 0 {
            // Not contiguous with what is held: neither completes the other.
            self.clear();
        }
        let skipped = self.skipping.min(bytes.len() as u64);
        self.skipping -= skipped;
        bytes = &bytes[skipped as usize..];
        if self.held.len() + bytes.len() > self.limit {
            self.dropped += (self.held.len() + bytes.len()) as u64;
            self.held.clear();
            return;
        }
        self.held.extend_from_slice(bytes);
    }

    /// The bytes held, in stream order.
    pub fn bytes(&self) -> &[u8] {
        &self.held
    }

    /// The reader is done with the first `n` bytes held.
    pub fn consume(&mut self, n: usize) {
        self.held.drain(..n.min(self.held.len()));
    }

    /// Passes over the next `n` bytes of the stream: those held first, then as they come.
    pub fn skip(&mut self, n: u64) {
        let now = n.min(self.held.len() as u64);
        self.consume(now as usize);
        self.skipping += n - now;
    }

    /// Gives up what is held (the reader cannot make sense of it), counted.
    pub fn clear(&mut self) {
        self.dropped += self.held.len() as u64;
        self.held.clear();
        self.skipping = 0;
    }
}

/// Another NF's results an NF reads: events of a type an NF registers (`FLOW/TYPE` from dpi,
/// `ALERT/SIG_MATCH` from sig-match), whose code the host gives at load time. List the path in
/// the NF's `subscribes` (mbox refuses the config unless an NF publishing it runs, and names
/// the bundled one that does), make the view in `Plugin::create`, and read each event with it:
///
/// ```
/// use mbox_abi::kit::Results;
/// use mbox_abi::{app, EventHeader, FlowTypeEvent, NfInit, FLOW_TYPE_PATH};
///
/// struct Nf {
///     flow_types: Results<FlowTypeEvent>,
/// }
///
/// impl Nf {
///     fn create(init: &NfInit<'_>) -> Nf {
///         Nf { flow_types: Results::new(init, FLOW_TYPE_PATH) }
///     }
///
///     fn on_event(&mut self, event: &EventHeader) {
///         if let Some(t) = self.flow_types.view(event) {
///             let _ = (app::name(t.app), t.host()); // "http", b"example.com"
///         }
///     }
/// }
/// # let init = mbox_abi::kit::testing::init("nf", "{}", 1, 16);
/// # let nf = Nf::create(&init);
/// # assert!(!nf.flow_types.registered(), "no dpi in this test's run");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Results<T> {
    ty: Option<crate::EventType>,
    _events: std::marker::PhantomData<fn() -> T>,
}

impl<T: Event> Results<T> {
    /// The results published under `path` (`FLOW_TYPE_PATH`, `SIG_MATCH_PATH`, ...).
    pub fn new(init: &crate::NfInit<'_>, path: &str) -> Results<T> {
        Results { ty: init.type_of(path), _events: std::marker::PhantomData }
    }

    /// Whether the run registered the type (an NF publishing it is loaded).
    pub fn registered(&self) -> bool {
        self.ty.is_some()
    }

    /// `event` as `T`, when it is one of these results.
    pub fn view<'e>(&self, event: &'e crate::EventHeader) -> Option<&'e T> {
        event.view_as::<T>(self.ty?)
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

/// A Maglev consistent-hash table (Eisenbud et al., *Maglev: A Fast and Reliable Software
/// Network Load Balancer*, NSDI 2016): a lookup table of a prime number of slots, each naming a
/// backend, that load balancers index with a hash of what should stick to one backend (a
/// client address, a host name). Every backend walks the slots in its own order (an offset and
/// a skip from two hashes of its key) and, turn by turn, takes the next free slot in that
/// order; a backend of weight `w` takes `w` turns per round, so its share of the slots (and of
/// uniformly spread hashes) is its share of the weights. Removing a backend frees only its
/// slots for the others to take, so most keys of the remaining backends stay where they were
/// (the paper's "minimal disruption": small, not zero).
///
/// The slot orders come from a fixed hash of each backend's key (its index, or a key the
/// caller gives, such as a hash of its name), never from a per-process random seed: two
/// processes that build the table for the same backends get the same table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// The backend (index into the weights given) of each slot; `MAGLEV_EMPTY` when no
    /// backend could take part.
    table: Vec<u32>,
}

/// A slot no backend holds (only in a table without a backend alive).
const MAGLEV_EMPTY: u32 = u32::MAX;

/// Most slots a table has (64 MiB of entries): a larger size asked for is capped, rather than
/// letting a mistaken argument take the memory.
const MAGLEV_MAX_SIZE: usize = 1 << 24;

impl Maglev {
    /// A table of `table_size` slots (rounded up to a prime, see [`Maglev::prime_at_least`];
    /// the paper wants at least 100 slots per backend) over backends `0..weights.len()`, each
    /// keyed by its index. Backends of weight 0 hold no slot.
    pub fn new(weights: &[u32], table_size: usize) -> Maglev {
        Maglev::build(weights.len(), |i| i as u64, |i| weights[i], table_size)
    }

    /// Like [`Maglev::new`], but only the backends whose `alive` entry is true take part (one
    /// past the end of `alive` counts as not alive); the others keep their index and hold no
    /// slot, so a table rebuilt without a backend moves only the keys that backend held (plus
    /// Maglev's small disruption).
    pub fn new_with(weights: &[u32], alive: &[bool], table_size: usize) -> Maglev {
        Maglev::build(weights.len(), |i| i as u64, |i| if alive.get(i) == Some(&true) { weights[i] } else { 0 }, table_size)
    }

    /// Like [`Maglev::new_with`], with each backend's slot order drawn from `keys[i]` instead
    /// of its index (a backend without a key is keyed by its index): with keys that follow the
    /// backends (a hash of each one's name), a backend keeps its slots when the list is
    /// reordered or others are added in front of it.
    pub fn with_keys(keys: &[u64], weights: &[u32], alive: &[bool], table_size: usize) -> Maglev {
        Maglev::build(
            weights.len(),
            |i| keys.get(i).copied().unwrap_or(i as u64),
            |i| if alive.get(i) == Some(&true) { weights[i] } else { 0 },
            table_size,
        )
    }

    /// The smallest prime at least `n` (and at least 2); `n` is capped at 2^24 first.
    pub fn prime_at_least(n: usize) -> usize {
        let is_prime = |p: usize| p >= 2 && (2..).take_while(|d| d * d <= p).all(|d| p % d != 0);
        (n.clamp(2, MAGLEV_MAX_SIZE)..).find(|&p| is_prime(p)).unwrap_or(MAGLEV_MAX_SIZE)
    }

    /// Fills the table: `n` backends, `key(i)` choosing backend i's slot order and `weight(i)`
    /// its turns per round (0: not taking part).
    fn build(n: usize, key: impl Fn(usize) -> u64, weight: impl Fn(usize) -> u32, table_size: usize) -> Maglev {
        let m = Maglev::prime_at_least(table_size);
        let mut table = vec![MAGLEV_EMPTY; m];
        // Index MAGLEV_EMPTY is the empty mark, so backends past it cannot be named.
        let n = n.min(MAGLEV_EMPTY as usize);
        // Per backend taking part: (index, weight, next slot in its order, skip).
        let mut walkers: Vec<(u32, u32, usize, usize)> = (0..n)
            .filter(|&i| weight(i) > 0)
            .map(|i| {
                let k = key(i);
                let offset = (splitmix64(k ^ 0x6d61_676c_6576_3031) % m as u64) as usize;
                let skip = (splitmix64(k ^ 0x6d61_676c_6576_3032) % (m as u64 - 1)) as usize + 1;
                (i as u32, weight(i), offset, skip)
            })
            .collect();
        if walkers.is_empty() {
            return Maglev { table };
        }
        // Turns go in key order, not list order: who wins a slot two backends want depends on
        // who goes first, and keyed backends should hold the same slots however they are listed.
        walkers.sort_by_key(|&(index, ..)| (key(index as usize), index));
        // `m` is prime and every skip is in 1..m, so each backend's order visits every slot:
        // a turn always finds a free one while any is left.
        let mut filled = 0;
        'rounds: loop {
            for (index, weight, next, skip) in walkers.iter_mut() {
                for _ in 0..*weight {
                    while table[*next] != MAGLEV_EMPTY {
                        *next = (*next + *skip) % m;
                    }
                    table[*next] = *index;
                    *next = (*next + *skip) % m;
                    filled += 1;
                    if filled == m {
                        break 'rounds;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// The backend for `hash` (which should be spread uniformly over u64: a good hash of the
    /// key, not the key itself); `None` when no backend is alive.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let slot = self.table[(hash % self.table.len() as u64) as usize];
        (slot != MAGLEV_EMPTY).then_some(slot as usize)
    }

    /// The number of slots (a prime).
    pub fn size(&self) -> usize {
        self.table.len()
    }

    /// How many slots `backend` holds.
    pub fn slots_of(&self, backend: usize) -> usize {
        self.table.iter().filter(|&&s| s as usize == backend && s != MAGLEV_EMPTY).count()
    }
}

/// FNV-1a, 64 bits, of `bytes`, lowercased when `fold` (host names compare in any case): a
/// fixed hash, the same in every process, for keys that must map alike across instances.
pub fn fnv1a(bytes: &[u8], fold: bool) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(if fold { b.to_ascii_lowercase() } else { b })).wrapping_mul(0x100_0000_01b3))
}

/// A final mix (MurmurHash3's) for hashes weak in their low bits, as FNV is: a table indexed
/// by `hash % size` ([`Maglev::lookup`]) reads those bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

/// A duration argument in ns: seconds as a number, or a string `N` followed by `ms`, `s`, `m`
/// or `h`; more than 0 and at most `max_ns`.
pub fn duration_ns(v: &serde_json::Value, max_ns: u64) -> Result<u64, String> {
    use serde_json::Value;
    let ns = match v {
        Value::Number(n) => match n.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 && s <= (max_ns / 1_000_000_000) as f64 => (s * 1e9) as u64,
            _ => return Err(format!("must be 0 to {} seconds, not {n}", max_ns / 1_000_000_000)),
        },
        Value::String(s) => {
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            let unit_ns: u64 = match &s[digits..] {
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(format!("{s:?} is not a duration (500ms, 10s, 2m, 1h)")),
            };
            let n: u64 = s[..digits].parse().map_err(|_| format!("{s:?} is not a duration (500ms, 10s, 2m, 1h)"))?;
            n.saturating_mul(unit_ns)
        }
        other => return Err(format!("must be a duration (\"10s\") or seconds, not {other}")),
    };
    if ns == 0 || ns > max_ns {
        return Err(format!("must be more than 0 and at most {} s, not {v}", max_ns / 1_000_000_000));
    }
    Ok(ns)
}

/// SplitMix64's finalizer: a fixed, well-mixing hash of a u64 (Steele et al., 2014).
#[inline]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A counter name made at run time (`backend_web1_picked`) that lives for the rest of the
/// process, as [`Counters::set`](crate::Counters::set) needs: the same name is made once
/// however often the NF is created (each reload creates one), so reloads leak nothing new.
pub fn static_name(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
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

    /// What an NF asked of one flow through a [`Recorder`]'s host calls.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Asked {
        /// Its binds (`Host::bind`), each answered `Done`.
        pub binds: Vec<std::net::SocketAddr>,
        /// The bytes it sent (`Host::send`, each taken whole), and its closes.
        pub sent: Vec<u8>,
        pub closes: u32,
        pub resets: u32,
        /// The same on a split proxy's server side (requests on the flow's `DIR_REPLY`).
        pub sent_reply: Vec<u8>,
        pub closes_reply: u32,
        pub resets_reply: u32,
    }

    /// A fake host for an NF's unit tests that records, by flow id, what the NF asked of each
    /// flow (binds, sends, closes, resets) and answers every request `Done`; anything else it
    /// publishes is refused as undeclared.
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub flows: std::collections::BTreeMap<u64, Asked>,
    }

    impl Recorder {
        /// Host calls that record into `self`, which must outlive them (and not move: box it).
        pub fn calls(&mut self) -> HostCalls {
            // SAFETY: `record` treats its state as a `Recorder`, which the caller keeps alive.
            unsafe { calls(self as *mut Recorder as *mut c_void, record) }
        }

        /// What the NF asked of flow `id` (nothing asked: empty).
        pub fn of(&self, id: u64) -> Asked {
            self.flows.get(&id).cloned().unwrap_or_default()
        }
    }

    /// [`Recorder`]'s publish call.
    unsafe extern "C" fn record(state: *mut c_void, event: *const EventHeader, size: u32) -> PublishStatus {
        use crate::nf::{BindRequest, BindStatus, StreamOp, StreamRequest, StreamStatus, BIND_REQUEST, STREAM_REQUEST};
        // SAFETY: `Recorder::calls` lends its recorder as the state for the calls' life.
        let rec = unsafe { &mut *(state as *mut Recorder) };
        // SAFETY: `Host` passes a pointer to an event struct that begins with a header.
        let header = unsafe { &*event };
        if header.ty == BIND_REQUEST && size as usize >= std::mem::size_of::<BindRequest>() {
            // SAFETY: a BIND_REQUEST of that size is a `BindRequest` the caller owns mutably.
            let req = unsafe { &mut *(event as *mut BindRequest) };
            let v6 = std::net::Ipv6Addr::from(req.addr);
            let ip = match (req.family, v6.to_ipv4_mapped()) {
                (4, Some(v4)) => std::net::IpAddr::V4(v4),
                _ => std::net::IpAddr::V6(v6),
            };
            rec.flows.entry(req.flow.id).or_default().binds.push(std::net::SocketAddr::new(ip, req.port));
            req.answer = BindStatus::Done as u8;
            return PublishStatus::Published;
        }
        if header.ty != STREAM_REQUEST || (size as usize) < std::mem::size_of::<StreamRequest>() {
            return PublishStatus::NotDeclared;
        }
        // SAFETY: a STREAM_REQUEST of that size is a `StreamRequest` the caller owns mutably.
        let req = unsafe { &mut *(event as *mut StreamRequest) };
        let asked = rec.flows.entry(req.flow.id).or_default();
        let reply = req.flow.dir == crate::DIR_REPLY;
        let (sent, closes, resets) = match reply {
            true => (&mut asked.sent_reply, &mut asked.closes_reply, &mut asked.resets_reply),
            false => (&mut asked.sent, &mut asked.closes, &mut asked.resets),
        };
        match req.op {
            StreamOp::Send => {
                // SAFETY: the request points at `len` readable bytes during the call.
                sent.extend_from_slice(unsafe { std::slice::from_raw_parts(req.bytes, req.len as usize) });
                req.accepted = req.len;
            }
            StreamOp::Close => *closes += 1,
            StreamOp::Reset => *resets += 1,
        }
        req.answer = StreamStatus::Done as u8;
        PublishStatus::Published
    }

    /// The counters `nf` reports (`NetworkFunction::counters`), by name.
    pub fn counters(nf: &impl crate::nf::NetworkFunction) -> Vec<(String, u64)> {
        let mut out = crate::abi_stable::std_types::RVec::new();
        nf.counters(&mut crate::nf::Counters { out: &mut out });
        out.iter().map(|c| (c.name.as_str().to_string(), c.value)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_buffer_joins_pieces_skips_bodies_and_starts_afresh_after_a_hole() {
        use crate::events::{FlowTcpEvent, StreamDataEvent};
        // SAFETY: plain integers throughout; all zero is what the host sends without a monitor.
        let tcp: FlowTcpEvent = unsafe { core::mem::zeroed() };
        let ev = |offset: u64, bytes: &'static [u8]| StreamDataEvent::new(tcp, offset, bytes);
        let mut b = StreamBuffer::new(16);
        b.push(&ev(0, b"GET / HT"));
        b.push(&ev(8, b"TP/1.1"));
        assert_eq!(b.bytes(), b"GET / HTTP/1.1");
        b.consume(6);
        b.skip(12); // the 8 held, and 4 still to come
        assert!(b.bytes().is_empty());
        b.push(&ev(14, b"bodyNEXT"));
        assert_eq!(b.bytes(), b"NEXT");
        // A hole before the next bytes: what is held cannot be completed.
        b.push(&ev(40, b"later"));
        assert_eq!((b.bytes(), b.dropped), (&b"later"[..], 4));
        // Past the limit: given up, counted.
        b.push(&ev(45, b"0123456789abcdef"));
        assert_eq!((b.bytes().len(), b.dropped), (0, 25));
    }

    #[test]
    fn a_line_writer_reopened_after_rotation_writes_a_new_file_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut w = LineWriter::open(path.to_str().unwrap(), false).unwrap();
        w.line("one");
        let rotated = dir.path().join("out.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        w.line("two");
        assert_eq!(w.reopen().unwrap(), path.display().to_string());
        w.line("three");
        w.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n", "buffered lines go to the rotated file");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        // Not rotated: appended to.
        w.reopen().unwrap();
        w.line("four");
        w.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\nfour\n");
    }

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

    /// `n` hashes from a fixed SplitMix64 stream (uniform, and the same on every run).
    fn hashes(n: usize) -> impl Iterator<Item = u64> {
        (0..n as u64).map(|i| splitmix64(i.wrapping_mul(0x2545_f491_4f6c_dd1d)))
    }

    #[test]
    fn maglev_shares_follow_the_weights() {
        let weights = [1, 2, 3];
        for size in [Maglev::prime_at_least(100 * weights.len()), 65_537] {
            let t = Maglev::new(&weights, size);
            assert_eq!(t.size(), size);
            let mut hits = [0u32; 3];
            for h in hashes(100_000) {
                hits[t.lookup(h).unwrap()] += 1;
            }
            for (i, &w) in weights.iter().enumerate() {
                let share = f64::from(hits[i]) / 100_000.0;
                let want = f64::from(w) / 6.0;
                assert!((share - want).abs() < 0.01, "size {size}: backend {i} got {share:.4}, want {want:.4}");
            }
        }
        // Weight 0, or not alive: no slot; nobody alive: no backend.
        let t = Maglev::new_with(&[1, 0, 1], &[true, true, false], 1009);
        assert_eq!((t.slots_of(0), t.slots_of(1), t.slots_of(2)), (1009, 0, 0));
        let t = Maglev::new_with(&[1, 1], &[false], 101);
        assert_eq!(t.lookup(7), None);
        assert_eq!(Maglev::new(&[], 10).lookup(0), None);
    }

    /// The keys, of `n` hashes, whose backend differs between `a` and `b` though it was not
    /// `removed` in `a`; and the keys `removed` held.
    fn moved(a: &Maglev, b: &Maglev, removed: usize, n: usize) -> (usize, usize) {
        let (mut moved, mut held) = (0, 0);
        for h in hashes(n) {
            let (was, now) = (a.lookup(h).unwrap(), b.lookup(h).unwrap());
            assert_ne!(now, removed);
            if was == removed {
                held += 1;
            } else if was != now {
                moved += 1;
            }
        }
        (moved, held)
    }

    #[test]
    fn maglev_removing_a_backend_moves_little_else() {
        let weights = [1; 5];
        // Measured over 100,000 keys: 1.8-3.1% of the other backends' keys move at 503 slots
        // (100 per backend), 0.4-0.65% at 5,003, 0.09-0.12% at 65,537: about 1/size each.
        for (size, bound) in [(Maglev::prime_at_least(500), 0.04), (5003, 0.01), (65_537, 0.003)] {
            let all = Maglev::new(&weights, size);
            for removed in 0..5 {
                let mut alive = [true; 5];
                alive[removed] = false;
                let fewer = Maglev::new_with(&weights, &alive, size);
                let (moved, held) = moved(&all, &fewer, removed, 100_000);
                let extra = moved as f64 / 100_000.0;
                assert!(extra < bound, "size {size}: {moved} keys of the other backends moved");
                assert!((15_000..25_000).contains(&held));
            }
        }
    }

    #[test]
    fn maglev_tables_are_deterministic() {
        let a = Maglev::new(&[1, 2, 1, 3], 401);
        assert_eq!(a, Maglev::new(&[1, 2, 1, 3], 401));
        assert_eq!(Maglev::with_keys(&[0, 1, 2, 3], &[1, 2, 1, 3], &[true; 4], 401), a, "keys default to indexes");
        // The same in every process and build: fixed hashes, no random seed.
        let first: Vec<_> = (0..16).map(|h| a.lookup(h).unwrap()).collect();
        assert_eq!(first, [1, 1, 3, 3, 3, 1, 3, 3, 2, 2, 0, 3, 0, 1, 1, 0]);
        // Keyed backends keep their slots when the list is reordered.
        let keys = [11, 22, 33];
        let t = Maglev::with_keys(&keys, &[1, 1, 1], &[true; 3], 307);
        let r = Maglev::with_keys(&[33, 11, 22], &[1, 1, 1], &[true; 3], 307);
        for h in 0..307 {
            assert_eq!(keys[t.lookup(h).unwrap()], [33, 11, 22][r.lookup(h).unwrap()]);
        }
        assert_eq!((Maglev::prime_at_least(0), Maglev::prime_at_least(500), Maglev::prime_at_least(65_536)), (2, 503, 65_537));
    }

    #[test]
    fn flags() {
        assert_eq!(tcp_flag_letters(0x02 | 0x10), "SA");
        assert_eq!(tcp_flag_letters(0x3f), "SAFRPU");
        assert_eq!(tcp_flag_letters(0), "-");
    }
}
