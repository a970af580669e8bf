//! The TCP option walk of a splice: where a header's timestamps and SACK blocks are, found
//! before anything is written so that a malformed option leaves the frame untouched.
//!
//! The lengths are checked as [`crate::wire::tcp::TcpOptionIter`] checks them (RFC 9293 3.1:
//! a kind and a length of at least 2 within the header; MSS 4, window scale 3, SACK-permitted
//! 2, SACK 2 + 8n with n ≥ 1, timestamps 10), so a frame [`super::translate()`] accepts is one
//! [`crate::wire::frame::TcpFrame::parse`] reads. Unknown kinds are skipped whatever their
//! contents; bytes after end-of-list are padding and are not read.

use super::SpliceError;
use crate::wire::tcp::option_kind::*;
use crate::wire::tcp::MAX_OPTIONS_LEN;

/// Most options of one kind a header holds: 40 option bytes, 10 per timestamps option (and at
/// least 10 per SACK option).
const MAX_OF_A_KIND: usize = 4;

/// Where the timestamps and SACK options sit in a header's option bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    /// Offsets into the options of each timestamps option's TSval (TSecr follows), in order.
    ts: [u8; MAX_OF_A_KIND],
    ts_len: u8,
    /// (offset of the first left edge, blocks) of each SACK option, in order.
    sack: [(u8, u8); MAX_OF_A_KIND],
    sack_len: u8,
}

impl Found {
    /// Offsets of each timestamps option's TSval; its TSecr is 4 bytes on (RFC 7323 3.2:
    /// kind 8, length 10). More than one is unusual (a receiver reads the last, as Linux
    /// does); all are rewritten.
    #[inline]
    pub fn timestamps(&self) -> impl Iterator<Item = usize> + '_ {
        self.ts[..usize::from(self.ts_len)].iter().map(|&at| usize::from(at))
    }

    /// Offsets of every SACK block edge (left, right, left, ...), each 4 bytes (RFC 2018 3).
    #[inline]
    pub fn sack_edges(&self) -> impl Iterator<Item = usize> + '_ {
        self.sack[..usize::from(self.sack_len)]
            .iter()
            .flat_map(|&(at, blocks)| (0..usize::from(blocks) * 2).map(move |edge| usize::from(at) + 4 * edge))
    }

    /// SACK blocks in all the SACK options.
    #[inline]
    pub fn sack_blocks(&self) -> usize {
        self.sack[..usize::from(self.sack_len)].iter().map(|&(_, blocks)| usize::from(blocks)).sum()
    }
}

/// Walks `options` (a header's option bytes, at most 40): where the timestamps and SACK
/// options are, or the offset of the first malformed option.
pub fn scan(options: &[u8]) -> Result<Found, SpliceError> {
    if options.len() > MAX_OPTIONS_LEN {
        return Err(SpliceError::MalformedOption { at: MAX_OPTIONS_LEN as u8 });
    }
    let mut found = Found::default();
    let mut at = 0;
    while let Some(&kind) = options.get(at) {
        let malformed = Err(SpliceError::MalformedOption { at: at as u8 });
        match kind {
            END_OF_LIST => break,
            NO_OPERATION => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = options.get(at + 1) else { return malformed };
        let len = usize::from(len);
        if len < 2 || at + len > options.len() {
            return malformed;
        }
        match (kind, len) {
            (MSS, 4) | (WINDOW_SCALE, 3) | (SACK_PERMITTED, 2) => {}
            (TIMESTAMPS, 10) => {
                if usize::from(found.ts_len) == MAX_OF_A_KIND {
                    return malformed;
                }
                found.ts[usize::from(found.ts_len)] = (at + 2) as u8;
                found.ts_len += 1;
            }
            (SACK, len) if len > 2 && (len - 2) % 8 == 0 => {
                if usize::from(found.sack_len) == MAX_OF_A_KIND {
                    return malformed;
                }
                found.sack[usize::from(found.sack_len)] = ((at + 2) as u8, ((len - 2) / 8) as u8);
                found.sack_len += 1;
            }
            (MSS | WINDOW_SCALE | SACK_PERMITTED | TIMESTAMPS | SACK, _) => return malformed,
            _ => {}
        }
        at += len;
    }
    Ok(found)
}
