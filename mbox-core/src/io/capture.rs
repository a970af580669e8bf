//! Reading pcap and pcapng captures (recognised by their magic number, whatever the file is
//! called) and writing pcap.
//!
//! The reader reads each record straight into the caller's buffer. Every length in the file is
//! checked against the bytes that remain and against sane limits before anything is allocated,
//! so a corrupt or hostile file ends in a [`CaptureError`] naming the byte offset, not a panic
//! or an unbounded allocation. [`CaptureReader::from_bytes`] reads a capture held in memory the
//! same way (the fuzz targets in mbox-fuzz use it).

use mbox_stack::wire::LinkType;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest record accepted (pcap's customary maximum snaplen).
pub const MAX_RECORD: u32 = 262_144;
/// Largest pcapng block accepted.
const MAX_BLOCK: u32 = 16 << 20;

/// What can go wrong with a capture file.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: empty file, not a capture")]
    Empty { path: PathBuf },
    #[error("{path}: not a pcap or pcapng file (starts with {magic:02x?})")]
    NotACapture { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: link type {linktype} is not supported (mbox reads Ethernet, Linux SLL/SLL2, raw IP and BSD loopback)")]
    UnsupportedLinkType { path: PathBuf, linktype: u32 },
    #[error("{path}: corrupt at byte {offset}: {what}")]
    Corrupt { path: PathBuf, offset: u64, what: String },
    #[error("{path}: the file ends inside a record at byte {offset} (cut short?)")]
    Truncated { path: PathBuf, offset: u64 },
}

/// Metadata of one packet read from a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Original length on the wire.
    pub wire_len: u32,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub link: LinkType,
    /// pcapng interface number (0 for pcap).
    pub interface: u32,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    linktype: u32,
    /// Timestamp units per second, as a power: (base 10 or 2, exponent).
    tsresol: (u32, u32),
    tsoffset_s: i64,
    snaplen: u32,
}

enum Format {
    Pcap { swapped: bool, nanos: bool, link: LinkType },
    PcapNg { swapped: bool, interfaces: Vec<Interface> },
}

/// Where a capture's bytes come from.
enum Input {
    File(BufReader<File>),
    Memory(io::Cursor<Vec<u8>>),
}

impl Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Memory(m) => m.read(buf),
        }
    }

    /// Moves `n` bytes on (or back); the file's buffer is kept.
    fn seek_relative(&mut self, n: i64) -> io::Result<()> {
        match self {
            Input::File(f) => f.seek_relative(n),
            Input::Memory(m) => m.seek(io::SeekFrom::Current(n)).map(|_| ()),
        }
    }
}

/// A capture being read. See the module documentation.
pub struct CaptureReader {
    path: PathBuf,
    file: Input,
    format: Format,
    offset: u64,
    len: u64,
    scratch: Vec<u8>,
    /// Packets skipped because their pcapng interface has an unsupported link type.
    pub skipped_unsupported: u64,
}

impl CaptureReader {
    /// Opens `path` and reads its file header.
    pub fn open(path: &Path) -> Result<CaptureReader, CaptureError> {
        let io_err = |source| CaptureError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        CaptureReader::start(path, Input::File(BufReader::with_capacity(1 << 20, file)), len)
    }

    /// Reads the capture held in `bytes`; `name` is only used in messages.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<CaptureReader, CaptureError> {
        let len = bytes.len() as u64;
        CaptureReader::start(name, Input::Memory(io::Cursor::new(bytes)), len)
    }

    /// Reads the file header from `file` (`len` bytes in all).
    fn start(path: &Path, file: Input, len: u64) -> Result<CaptureReader, CaptureError> {
        let mut reader = CaptureReader {
            path: path.to_path_buf(),
            file,
            format: Format::Pcap { swapped: false, nanos: false, link: LinkType::Ethernet },
            offset: 0,
            len,
            scratch: Vec::new(),
            skipped_unsupported: 0,
        };
        let mut magic = [0u8; 4];
        let got = reader.read_some(&mut magic)?;
        if got == 0 {
            return Err(CaptureError::Empty { path: path.to_path_buf() });
        }
        if got < 4 {
            return Err(CaptureError::NotACapture { path: path.to_path_buf(), magic: magic[..got].to_vec() });
        }
        match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                reader.format = Format::PcapNg { swapped: false, interfaces: Vec::new() };
                reader.section_header(magic)?;
            }
            _ => reader.pcap_header(magic)?,
        }
        Ok(reader)
    }

    /// Bytes of the file consumed so far, and the file's size (for progress bars).
    pub fn progress(&self) -> (u64, u64) {
        (self.offset, self.len)
    }

    /// The link type of the first interface (what a pcap written from this input should use).
    pub fn first_link(&self) -> Option<LinkType> {
        match &self.format {
            Format::Pcap { link, .. } => Some(*link),
            Format::PcapNg { interfaces, .. } => interfaces.iter().find_map(|i| i.link),
        }
    }

    /// Reads the next packet into `buf` (replacing its contents). `None` at the end of the file.
    pub fn next_packet(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordMeta>, CaptureError> {
        match self.format {
            Format::Pcap { swapped, nanos, link } => self.next_pcap(buf, swapped, nanos, link),
            Format::PcapNg { .. } => self.next_pcapng(buf),
        }
    }

    fn pcap_header(&mut self, magic: [u8; 4]) -> Result<(), CaptureError> {
        let (swapped, nanos) = match u32::from_le_bytes(magic) {
            0xa1b2_c3d4 => (false, false),
            0xd4c3_b2a1 => (true, false),
            0xa1b2_3c4d => (false, true),
            0x4d3c_b2a1 => (true, true),
            _ => return Err(CaptureError::NotACapture { path: self.path.clone(), magic: magic.to_vec() }),
        };
        let mut rest = [0u8; 20];
        self.read_exact_or_truncated(&mut rest)?;
        let linktype = u32_at(&rest, 16, swapped) & 0x0fff_ffff; // upper bits carry FCS info
        let link = LinkType::from_linktype(linktype).ok_or(CaptureError::UnsupportedLinkType { path: self.path.clone(), linktype })?;
        self.format = Format::Pcap { swapped, nanos, link };
        Ok(())
    }

    fn next_pcap(&mut self, buf: &mut Vec<u8>, swapped: bool, nanos: bool, link: LinkType) -> Result<Option<RecordMeta>, CaptureError> {
        let mut hdr = [0u8; 16];
        let got = self.read_some(&mut hdr)?;
        if got == 0 {
            return Ok(None);
        }
        if got < hdr.len() {
            return Err(self.truncated());
        }
        let record_at = self.offset - 16;
        let secs = u64::from(u32_at(&hdr, 0, swapped));
        let frac = u64::from(u32_at(&hdr, 4, swapped));
        let caplen = u32_at(&hdr, 8, swapped);
        let wire_len = u32_at(&hdr, 12, swapped);
        if caplen > MAX_RECORD {
            return Err(self.corrupt(record_at, format!("record length {caplen} exceeds {MAX_RECORD}")));
        }
        self.read_into(buf, caplen as usize)?;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(RecordMeta { wire_len: wire_len.max(caplen), ts_ns, link, interface: 0 }))
    }

    /// Reads a section header block whose first 4 bytes (`magic`) were consumed.
    fn section_header(&mut self, magic: [u8; 4]) -> Result<(), CaptureError> {
        let block_at = self.offset - 4;
        let mut head = [0u8; 8];
        self.read_exact_or_truncated(&mut head)?;
        let swapped = match u32::from_le_bytes([head[4], head[5], head[6], head[7]]) {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            _ => {
                let mut seen = magic.to_vec();
                seen.extend_from_slice(&head);
                return Err(CaptureError::NotACapture { path: self.path.clone(), magic: seen });
            }
        };
        let total = u32_at(&head, 0, swapped);
        self.check_block_len(block_at, total, 28)?;
        // Version and section length (16 bytes) and options: nothing mbox needs.
        self.skip((total - 12) as u64)?;
        self.format = Format::PcapNg { swapped, interfaces: Vec::new() };
        Ok(())
    }

    fn next_pcapng(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordMeta>, CaptureError> {
        loop {
            let mut head = [0u8; 8];
            let got = self.read_some(&mut head)?;
            if got == 0 {
                return Ok(None);
            }
            if got < head.len() {
                return Err(self.truncated());
            }
            let block_at = self.offset - 8;
            if head[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                // A new section: rewind over the length and re-read it with the new byte order.
                self.offset -= 4;
                self.file.seek_relative(-4).map_err(|source| CaptureError::Io { path: self.path.clone(), source })?;
                self.section_header([0x0a, 0x0d, 0x0d, 0x0a])?;
                continue;
            }
            let Format::PcapNg { swapped, .. } = self.format else { unreachable!("pcapng reader in pcap mode") };
            let kind = u32_at(&head, 0, swapped);
            let total = u32_at(&head, 4, swapped);
            self.check_block_len(block_at, total, 12)?;
            let body = (total - 12) as usize;
            match kind {
                // Enhanced packet block: interface, timestamp, lengths, data, options.
                // Enhanced (6) and obsolete (2) packet blocks: interface, timestamp, lengths,
                // data, options. The obsolete block's interface is 16 bits, then a drop count.
                6 | 2 => {
                    if body < 20 {
                        return Err(self.corrupt(block_at, "packet block too short".into()));
                    }
                    let mut fixed = [0u8; 20];
                    self.read_exact_or_truncated(&mut fixed)?;
                    let iface = if kind == 6 {
                        u32_at(&fixed, 0, swapped)
                    } else {
                        u32::from(if swapped { u16::from_be_bytes([fixed[0], fixed[1]]) } else { u16::from_le_bytes([fixed[0], fixed[1]]) })
                    };
                    let units = (u64::from(u32_at(&fixed, 4, swapped)) << 32) | u64::from(u32_at(&fixed, 8, swapped));
                    let caplen = u32_at(&fixed, 12, swapped);
                    let wire_len = u32_at(&fixed, 16, swapped);
                    if caplen > MAX_RECORD || 20 + (caplen as usize).div_ceil(4) * 4 > body {
                        return Err(self.corrupt(block_at, format!("packet length {caplen} does not fit its block")));
                    }
                    self.read_into(buf, caplen as usize)?;
                    self.skip((body - 20 - caplen as usize) as u64 + 4)?;
                    match self.interface(block_at, iface)? {
                        Some(i) => return Ok(Some(self.meta(i, iface, units, wire_len.max(caplen)))),
                        None => continue,
                    }
                }
                // Simple packet block: original length, then data captured up to the snaplen.
                3 => {
                    if body < 4 {
                        return Err(self.corrupt(block_at, "simple packet block too short".into()));
                    }
                    let mut fixed = [0u8; 4];
                    self.read_exact_or_truncated(&mut fixed)?;
                    let wire_len = u32_at(&fixed, 0, swapped);
                    let Some(i) = self.interface(block_at, 0)? else {
                        self.skip(body as u64)?;
                        continue;
                    };
                    let snap = if i.snaplen == 0 { u32::MAX } else { i.snaplen };
                    let caplen = wire_len.min(snap).min((body - 4) as u32);
                    if caplen > MAX_RECORD {
                        return Err(self.corrupt(block_at, format!("packet length {caplen} exceeds {MAX_RECORD}")));
                    }
                    self.read_into(buf, caplen as usize)?;
                    self.skip((body - 4 - caplen as usize) as u64 + 4)?;
                    return Ok(Some(self.meta(i, 0, 0, wire_len)));
                }
                // Interface description block.
                1 => {
                    let mut body_bytes = std::mem::take(&mut self.scratch);
                    body_bytes.resize(body + 4, 0);
                    self.read_exact_or_truncated(&mut body_bytes)?;
                    let parsed = self.parse_interface(block_at, &body_bytes[..body], swapped);
                    self.scratch = body_bytes;
                    let iface = parsed?;
                    if let Format::PcapNg { interfaces, .. } = &mut self.format {
                        if interfaces.len() >= 65_536 {
                            return Err(self.corrupt(block_at, "more than 65,536 interfaces".into()));
                        }
                        interfaces.push(iface);
                    }
                }
                // Name resolution, statistics, custom and unknown blocks: skipped.
                _ => self.skip(body as u64 + 4)?,
            }
        }
    }

    fn parse_interface(&self, block_at: u64, body: &[u8], swapped: bool) -> Result<Interface, CaptureError> {
        if body.len() < 8 {
            return Err(self.corrupt(block_at, "interface description block too short".into()));
        }
        let linktype = u32::from(if swapped { u16::from_be_bytes([body[0], body[1]]) } else { u16::from_le_bytes([body[0], body[1]]) });
        let mut iface = Interface {
            link: LinkType::from_linktype(linktype),
            linktype,
            tsresol: (10, 6),
            tsoffset_s: 0,
            snaplen: u32_at(body, 4, swapped),
        };
        let mut opts = &body[8..];
        while opts.len() >= 4 {
            let code = if swapped { u16::from_be_bytes([opts[0], opts[1]]) } else { u16::from_le_bytes([opts[0], opts[1]]) };
            let len = usize::from(if swapped { u16::from_be_bytes([opts[2], opts[3]]) } else { u16::from_le_bytes([opts[2], opts[3]]) });
            // An option running past the block is ignored, as is the rest of the list.
            let Some(value) = opts.get(4..4 + len) else { break };
            match (code, value) {
                (0, _) => break,
                (9, &[v]) => {
                    iface.tsresol = if v & 0x80 == 0 { (10, u32::from(v)) } else { (2, u32::from(v & 0x7f)) };
                }
                (14, bytes) if bytes.len() == 8 => {
                    let raw: [u8; 8] = bytes.try_into().unwrap_or([0; 8]);
                    iface.tsoffset_s = if swapped { i64::from_be_bytes(raw) } else { i64::from_le_bytes(raw) };
                }
                _ => {}
            }
            let step = 4 + len.div_ceil(4) * 4;
            opts = opts.get(step..).unwrap_or(&[]);
        }
        Ok(iface)
    }

    /// The interface a packet block names, or `None` (counted) when its link type is unsupported.
    fn interface(&mut self, block_at: u64, id: u32) -> Result<Option<Interface>, CaptureError> {
        let Format::PcapNg { interfaces, .. } = &self.format else { return Ok(None) };
        let Some(iface) = interfaces.get(id as usize).copied() else {
            return Err(self.corrupt(block_at, format!("packet names interface {id}, which was never described")));
        };
        if iface.link.is_none() {
            self.skipped_unsupported += 1;
            if interfaces.iter().all(|i| i.link.is_none()) && self.skipped_unsupported == 1 {
                log::warn!(
                    "{}: interface {id} has link type {}, which mbox does not parse; its packets are skipped and counted",
                    self.path.display(),
                    iface.linktype
                );
            }
            return Ok(None);
        }
        Ok(Some(iface))
    }

    fn meta(&self, i: Interface, interface: u32, units: u64, wire_len: u32) -> RecordMeta {
        RecordMeta { wire_len, ts_ns: units_to_ns(units, i.tsresol, i.tsoffset_s), link: i.link.unwrap_or(LinkType::Ethernet), interface }
    }

    fn check_block_len(&self, block_at: u64, total: u32, min: u32) -> Result<(), CaptureError> {
        if total < min || total % 4 != 0 || total > MAX_BLOCK {
            return Err(self.corrupt(block_at, format!("block length {total} is invalid")));
        }
        if block_at + u64::from(total) > self.len {
            return Err(CaptureError::Truncated { path: self.path.clone(), offset: self.len });
        }
        Ok(())
    }

    fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<(), CaptureError> {
        if self.offset + len as u64 > self.len {
            return Err(self.truncated());
        }
        // No clear first: resizing a reused buffer then zeroes only bytes it never held, and the
        // read overwrites the rest.
        buf.resize(len, 0);
        self.read_exact_or_truncated(buf)
    }

    fn read_exact_or_truncated(&mut self, buf: &mut [u8]) -> Result<(), CaptureError> {
        let got = self.read_some(buf)?;
        if got < buf.len() {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Reads until `buf` is full or the file ends; returns the bytes read.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, CaptureError> {
        let mut got = 0;
        while got < buf.len() {
            match self.file.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(CaptureError::Io { path: self.path.clone(), source }),
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    fn skip(&mut self, n: u64) -> Result<(), CaptureError> {
        if self.offset + n > self.len {
            return Err(self.truncated());
        }
        self.file.seek_relative(n as i64).map_err(|source| CaptureError::Io { path: self.path.clone(), source })?;
        self.offset += n;
        Ok(())
    }

    fn truncated(&self) -> CaptureError {
        CaptureError::Truncated { path: self.path.clone(), offset: self.len }
    }

    fn corrupt(&self, offset: u64, what: String) -> CaptureError {
        CaptureError::Corrupt { path: self.path.clone(), offset, what }
    }
}

#[inline]
fn u32_at(b: &[u8], at: usize, swapped: bool) -> u32 {
    let raw = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if swapped {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    }
}

/// Converts pcapng timestamp units to nanoseconds since the epoch, saturating.
fn units_to_ns(units: u64, (base, exp): (u32, u32), offset_s: i64) -> u64 {
    let per_sec: u128 = match base {
        10 if exp <= 30 => 10u128.pow(exp),
        2 if exp <= 100 => 1u128 << exp.min(127),
        _ => 1_000_000,
    };
    let ns = u128::from(units) * 1_000_000_000 / per_sec;
    let ns = ns as i128 + i128::from(offset_s) * 1_000_000_000;
    ns.clamp(0, i128::from(u64::MAX)) as u64
}

/// Writes a classic pcap file with nanosecond timestamps.
pub struct PcapWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl PcapWriter {
    /// Creates `path` for packets framed as `link`.
    pub fn create(path: &Path, link: LinkType) -> Result<PcapWriter, CaptureError> {
        let io_err = |source| CaptureError::Io { path: path.to_path_buf(), source };
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_err)?);
        out.write_all(&pcap_file_header(link)).map_err(io_err)?;
        Ok(PcapWriter { out, path: path.to_path_buf() })
    }

    /// Appends one packet.
    pub fn write(&mut self, ts_ns: u64, wire_len: u32, data: &[u8]) -> Result<(), CaptureError> {
        let io_err = |source| CaptureError::Io { path: self.path.clone(), source };
        self.out.write_all(&pcap_record_header(ts_ns, wire_len, data.len() as u32)).map_err(io_err)?;
        self.out.write_all(data).map_err(io_err)
    }

    /// Flushes buffered records to the file.
    pub fn finish(mut self) -> Result<(), CaptureError> {
        self.flush()
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.out.flush().map_err(|source| CaptureError::Io { path: self.path.clone(), source })
    }
}

/// The 24-byte header [`PcapWriter`] starts a file with: nanosecond timestamps, `link` framing.
pub fn pcap_file_header(link: LinkType) -> [u8; 24] {
    let mut header = [0u8; 24];
    header[0..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    header[4..6].copy_from_slice(&2u16.to_le_bytes());
    header[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs (8..16) stay 0.
    header[16..20].copy_from_slice(&MAX_RECORD.to_le_bytes());
    header[20..24].copy_from_slice(&link.to_linktype().to_le_bytes());
    header
}

/// The 16-byte record header [`PcapWriter`] puts before `caplen` bytes of a packet. Classic pcap
/// holds seconds in 32 bits: a time from 2106 on wraps.
pub fn pcap_record_header(ts_ns: u64, wire_len: u32, caplen: u32) -> [u8; 16] {
    let mut rec = [0u8; 16];
    rec[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    rec[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
    rec[8..12].copy_from_slice(&caplen.to_le_bytes());
    rec[12..16].copy_from_slice(&wire_len.max(caplen).to_le_bytes());
    rec
}

/// Reads the whole capture at `path` into memory (tests and benchmarks).
pub fn read_all(path: &Path) -> Result<Vec<(RecordMeta, Vec<u8>)>, CaptureError> {
    let mut reader = CaptureReader::open(path)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(meta) = reader.next_packet(&mut buf)? {
        out.push((meta, buf.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn pcap_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let mut w = PcapWriter::create(&path, LinkType::Ethernet).unwrap();
        w.write(1_500_000_000_123_456_789, 100, &[1, 2, 3]).unwrap();
        w.write(1_500_000_001_000_000_000, 4, &[4, 5, 6, 7]).unwrap();
        w.finish().unwrap();
        let all = read_all(&path).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0.ts_ns, 1_500_000_000_123_456_789);
        assert_eq!(all[0].0.wire_len, 100);
        assert_eq!(all[0].1, vec![1, 2, 3]);
        assert_eq!(all[1].1, vec![4, 5, 6, 7]);
    }

    #[test]
    fn garbage_and_empty_files_are_clear_errors() {
        let f = write_file(b"");
        assert!(matches!(CaptureReader::open(f.path()), Err(CaptureError::Empty { .. })));
        let f = write_file(b"GET / HTTP/1.1\r\n\r\n");
        let err = CaptureReader::open(f.path()).err().unwrap();
        assert!(err.to_string().contains("not a pcap or pcapng"), "{err}");
        let f = write_file(&[0xd4, 0xc3]);
        assert!(matches!(CaptureReader::open(f.path()), Err(CaptureError::NotACapture { .. })));
    }

    #[test]
    fn cut_and_oversized_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let mut w = PcapWriter::create(&path, LinkType::Ethernet).unwrap();
        w.write(0, 60, &[0; 60]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in 24..bytes.len() {
            let f = write_file(&bytes[..cut]);
            let mut r = CaptureReader::open(f.path()).unwrap();
            let mut buf = Vec::new();
            let res = r.next_packet(&mut buf);
            if cut == 24 {
                assert!(matches!(res, Ok(None)));
            } else {
                assert!(matches!(res, Err(CaptureError::Truncated { .. })), "cut {cut}: {res:?}");
            }
        }
        let mut huge = bytes.clone();
        huge[24 + 8..24 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let f = write_file(&huge);
        let mut r = CaptureReader::open(f.path()).unwrap();
        let err = r.next_packet(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn pcapng_with_two_interfaces_and_resolutions() {
        let mut f = Vec::new();
        let block = |f: &mut Vec<u8>, kind: u32, body: &[u8]| {
            let total = (12 + body.len()) as u32;
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&total.to_le_bytes());
            f.extend_from_slice(body);
            f.extend_from_slice(&total.to_le_bytes());
        };
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        block(&mut f, 0x0a0d_0d0a, &shb);
        // Interface 0: Ethernet, microseconds. Interface 1: raw IP, nanoseconds (if_tsresol 9).
        block(&mut f, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        block(&mut f, 1, &[101, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        let epb = |iface: u32, units: u64, data: &[u8]| {
            let mut b = Vec::new();
            b.extend_from_slice(&iface.to_le_bytes());
            b.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(units as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().div_ceil(4) * 4, 0);
            b
        };
        block(&mut f, 6, &epb(0, 1_000_000, &[9; 5]));
        block(&mut f, 6, &epb(1, 2_000_000_000, &[8; 8]));
        block(&mut f, 6, &epb(7, 0, &[1]));
        let file = write_file(&f);
        let mut r = CaptureReader::open(file.path()).unwrap();
        let mut buf = Vec::new();
        let a = r.next_packet(&mut buf).unwrap().unwrap();
        assert_eq!((a.ts_ns, a.link, buf.len()), (1_000_000_000, LinkType::Ethernet, 5));
        let b = r.next_packet(&mut buf).unwrap().unwrap();
        assert_eq!((b.ts_ns, b.link, buf.len()), (2_000_000_000, LinkType::RawIp, 8));
        let err = r.next_packet(&mut buf).unwrap_err();
        assert!(err.to_string().contains("interface 7"), "{err}");
    }

    #[test]
    fn timestamp_units_convert_exactly() {
        assert_eq!(units_to_ns(1_500_000, (10, 6), 0), 1_500_000_000);
        assert_eq!(units_to_ns(3, (10, 9), 0), 3);
        assert_eq!(units_to_ns(1 << 20, (2, 20), 0), 1_000_000_000);
        assert_eq!(units_to_ns(1, (10, 0), 5), 6_000_000_000);
        assert_eq!(units_to_ns(u64::MAX, (10, 0), i64::MAX), u64::MAX);
        assert_eq!(units_to_ns(0, (10, 6), -5), 0);
    }
}
