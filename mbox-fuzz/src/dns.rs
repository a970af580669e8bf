//! DNS (mbox_proto::dns): a message's header and question names, and DNS-over-TCP framing.
//!
//! Names are at most 255 bytes, a message that parses reports as many names as its header
//! declares questions, and names written back into a message (uncompressed) read back the
//! same. Framing splits a stream into messages that frame back to the bytes it consumed.

use mbox_proto::dns::{for_each_question, header, tcp_messages, MAX_NAME};

/// The question names of `msg`, and whether it parsed.
fn questions(msg: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut names = Vec::new();
    let ok = for_each_question(msg, |name| {
        assert!(name.len() <= MAX_NAME, "a name of {} bytes", name.len());
        names.push(name.to_vec());
    });
    (names, ok)
}

/// A query asking for `names`, uncompressed; `None` when a name has an empty label or one
/// longer than 63 bytes (it cannot be written as labels split at its dots).
fn query(id: u16, names: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00]);
    m.extend_from_slice(&(names.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0; 6]);
    for name in names {
        if !name.is_empty() {
            for label in name.split(|&b| b == b'.') {
                if label.is_empty() || label.len() > 63 {
                    return None;
                }
                m.push(label.len() as u8);
                m.extend_from_slice(label);
            }
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
    }
    Some(m)
}

/// A message from arbitrary bytes (also read as a DNS-over-TCP stream).
pub fn fuzz_dns(data: &[u8]) {
    let (names, ok) = questions(data);
    let h = header(data);
    assert_eq!(h.is_some(), data.len() >= 12);
    if let Some(h) = h {
        assert!(names.len() <= usize::from(h.questions));
        if ok {
            assert_eq!(names.len(), usize::from(h.questions), "a message that parses reports every question");
        }
        if let Some(again) = query(h.id, &names) {
            assert_eq!(questions(&again), (names.clone(), true), "names written back read back the same");
        }
    } else {
        assert!(!ok && names.is_empty());
    }
    let mut messages = Vec::new();
    let used = tcp_messages(data, |m| messages.push(m.to_vec()));
    assert!(used <= data.len());
    let mut framed = Vec::new();
    for m in &messages {
        framed.extend_from_slice(&(m.len() as u16).to_be_bytes());
        framed.extend_from_slice(m);
    }
    assert_eq!(framed, data[..used], "the messages frame back to the bytes consumed");
    let rest = &data[used..];
    assert!(rest.len() < 2 || rest.len() < 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]])), "a whole message left unread");
}
