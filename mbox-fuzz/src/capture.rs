//! Capture files (mbox_core::io::capture): pcap and pcapng read from any bytes.
//!
//! Reading ends, at the end or at an error, without a panic and without reading a record
//! bigger than `MAX_RECORD`; every record moves the reader on; a record's wire length is at
//! least what was captured. What was read, written as a pcap the way `PcapWriter` writes one,
//! reads back the same.

use mbox_core::io::capture::{pcap_file_header, pcap_record_header, CaptureReader, RecordMeta, MAX_RECORD};
use std::path::Path;

/// Most records read from one input.
const MAX_PACKETS: usize = 4096;

/// A record read: its metadata and bytes.
type Record = (RecordMeta, Vec<u8>);

/// Every record of `bytes` (up to the first error), and whether the reader got to the end.
fn read(bytes: Vec<u8>) -> Option<(Vec<Record>, bool)> {
    let len = bytes.len() as u64;
    let mut reader = CaptureReader::from_bytes(Path::new("fuzz.pcap"), bytes).ok()?;
    let (mut packets, mut buf) = (Vec::new(), Vec::new());
    let mut at = reader.progress().0;
    let mut ended = false;
    while packets.len() < MAX_PACKETS {
        match reader.next_packet(&mut buf) {
            Ok(Some(meta)) => {
                assert!(buf.len() <= MAX_RECORD as usize, "a record of {} bytes", buf.len());
                assert!(meta.wire_len as usize >= buf.len(), "wire length {} under the {} bytes captured", meta.wire_len, buf.len());
                let (now, total) = reader.progress();
                assert!(now > at && now <= total && total == len, "progress {at} -> {now} of {total} ({len} bytes)");
                at = now;
                packets.push((meta, buf.clone()));
            }
            Ok(None) => {
                ended = true;
                break;
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    Some((packets, ended))
}

/// A capture from arbitrary bytes; what it holds, written as a pcap, read back.
pub fn fuzz_capture(data: &[u8]) {
    let Some((packets, _)) = read(data.to_vec()) else { return };
    let Some(link) = packets.first().map(|(m, _)| m.link) else { return };
    // One link type per pcap, and 32-bit seconds: what a pcap can hold of them.
    let fits = |(m, _): &&Record| m.link == link && m.ts_ns / 1_000_000_000 <= u64::from(u32::MAX);
    let kept: Vec<&Record> = packets.iter().filter(fits).collect();
    let mut pcap = pcap_file_header(link).to_vec();
    for (m, bytes) in &kept {
        pcap.extend_from_slice(&pcap_record_header(m.ts_ns, m.wire_len, bytes.len() as u32));
        pcap.extend_from_slice(bytes);
    }
    let (back, ended) = read(pcap).expect("a pcap as PcapWriter writes one opens");
    assert!(ended, "a pcap as PcapWriter writes one reads to its end");
    assert_eq!(back.len(), kept.len());
    for ((m, bytes), (b, back_bytes)) in kept.iter().zip(&back) {
        assert_eq!((m.ts_ns, m.wire_len, m.link, bytes), (b.ts_ns, b.wire_len, b.link, back_bytes), "a record written and read back");
    }
}
