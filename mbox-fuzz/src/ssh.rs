//! SSH (mbox_proto::ssh): the identification line at the start of one side's stream, after
//! any lines a server sends before it.
//!
//! The banner found is a slice of the stream's first line that starts with `SSH-`, within
//! RFC 4253's 255 characters, and a banner found in a prefix of the stream is the whole
//! stream's. (A prefix that is refused may still turn out SSH: an incomplete first line that
//! does not start like `SSH-` is refused early, though once complete it would be a preamble
//! line a server may send. Both callers only act on `Done`.)

use crate::{cuts, is_within};
use mbox_proto::ssh::banner;
use mbox_proto::Parse;

/// The identification line at the start of arbitrary bytes.
pub fn fuzz_ssh_banner(data: &[u8]) {
    let full = banner(data);
    if let Parse::Done(b) = &full {
        assert!(is_within(b.proto_version, data) && is_within(b.software, data), "a banner outside its input");
        for field in [b.proto_version, b.software] {
            assert!(!field.contains(&b'\n'), "a banner field across lines");
        }
        assert!(!b.software.contains(&b' '), "the software version ends at the first space");
        // The line it came from: `SSH-`, the protocol version, `-`, the software.
        let start = b.proto_version.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start >= 4 && &data[start - 4..start] == b"SSH-", "a banner not after `SSH-`");
        assert!(b.proto_version.len() + b.software.len() + 5 <= 255, "longer than an identification line may be");
    }
    for cut in cuts(data) {
        if let p @ Parse::Done(_) = banner(&data[..cut]) {
            assert_eq!(p, full, "a banner in the first {cut} bytes differs from the whole input's");
        }
    }
}
