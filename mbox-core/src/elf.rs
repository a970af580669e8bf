//! Checking that a shared library file is whole before the dynamic loader maps it.
//!
//! The loader maps a library's `PT_LOAD` segments straight from the file; a segment that runs
//! past the end of a truncated file (one `cargo` or `cp` is still writing) is mapped anyway, and
//! the first touch of its missing pages kills the process with SIGBUS. So the headers are read
//! here with plain reads (never mapped) and every range they point at — each loadable segment,
//! the section header table and each section with bytes in the file — must lie inside the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use thiserror::Error;

/// Why a file is not a whole ELF shared library.
#[derive(Debug, Error)]
pub enum ElfError {
    #[error("reading it: {0}")]
    Read(#[from] std::io::Error),
    #[error("not an ELF file (its first bytes are not \\x7fELF)")]
    NotElf,
    #[error("unsupported ELF header: {0}")]
    Header(&'static str),
    #[error("the file is incomplete (still being written?): {what} ends at byte {end}, but the file has {len} bytes")]
    Truncated { what: String, end: u64, len: u64 },
}

const PT_LOAD: u32 = 1;
const SHT_NOBITS: u32 = 8;
/// `e_phnum` saying that the real count is in section header 0's `sh_info`.
const PN_XNUM: u16 = 0xffff;

/// Field reader for one ELF class and byte order.
#[derive(Clone, Copy)]
struct Layout {
    wide: bool,
    big_endian: bool,
}

impl Layout {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.big_endian {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    fn u64(self, b: &[u8], at: usize) -> u64 {
        let mut v = [0; 8];
        v.copy_from_slice(&b[at..at + 8]);
        if self.big_endian {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    }

    /// An address-sized field: 8 bytes in ELF64, 4 in ELF32.
    fn word(self, b: &[u8], at: usize) -> u64 {
        if self.wide {
            self.u64(b, at)
        } else {
            u64::from(self.u32(b, at))
        }
    }
}

/// Checks that `path` is an ELF file whose loadable segments, section header table and
/// sections all lie within it.
pub fn check_complete(path: &Path) -> Result<(), ElfError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let within = |what: &dyn Fn() -> String, offset: u64, size: u64| match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        end => Err(ElfError::Truncated { what: what(), end: end.unwrap_or(u64::MAX), len }),
    };
    let mut ident = [0u8; 16];
    if len < 16 {
        return if len >= 4 && read_at(&file, &mut ident[..4], 0).is_ok() && ident[..4] == *b"\x7fELF" {
            Err(ElfError::Truncated { what: "the ELF identification".into(), end: 16, len })
        } else {
            Err(ElfError::NotElf)
        };
    }
    read_at(&file, &mut ident, 0)?;
    if ident[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let layout = Layout {
        wide: match ident[4] {
            1 => false,
            2 => true,
            _ => return Err(ElfError::Header("unknown class")),
        },
        big_endian: match ident[5] {
            1 => false,
            2 => true,
            _ => return Err(ElfError::Header("unknown byte order")),
        },
    };
    let header_len: u64 = if layout.wide { 64 } else { 52 };
    within(&|| "the ELF header".into(), 0, header_len)?;
    let mut h = [0u8; 64];
    read_at(&file, &mut h[..header_len as usize], 0)?;
    // Offsets of e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum.
    let (phoff, shoff, rest) = if layout.wide {
        (layout.u64(&h, 32), layout.u64(&h, 40), 54)
    } else {
        (u64::from(layout.u32(&h, 28)), u64::from(layout.u32(&h, 32)), 42)
    };
    let (phentsize, phnum) = (layout.u16(&h, rest), layout.u16(&h, rest + 2));
    let (shentsize, shnum) = (layout.u16(&h, rest + 4), layout.u16(&h, rest + 6));
    let (ph_min, sh_min) = if layout.wide { (56, 64) } else { (32, 40) };

    // Section header 0 holds the real counts when they do not fit the header's fields.
    let mut sections = u64::from(shnum);
    let mut segments = u64::from(phnum);
    if shoff != 0 {
        if usize::from(shentsize) < sh_min {
            return Err(ElfError::Header("section headers smaller than the format's"));
        }
        within(&|| "section header 0".into(), shoff, u64::from(shentsize))?;
        let mut first = vec![0u8; sh_min];
        read_at(&file, &mut first, shoff)?;
        if shnum == 0 {
            sections = layout.word(&first, if layout.wide { 32 } else { 20 });
        }
        if phnum == PN_XNUM {
            segments = u64::from(layout.u32(&first, if layout.wide { 44 } else { 28 }));
        }
        let table = sections.saturating_mul(u64::from(shentsize));
        within(&|| format!("the section header table ({sections} entries)"), shoff, table)?;
    }
    if segments > 0 {
        if usize::from(phentsize) < ph_min {
            return Err(ElfError::Header("program headers smaller than the format's"));
        }
        let table = segments * u64::from(phentsize);
        within(&|| format!("the program header table ({segments} entries)"), phoff, table)?;
    }
    let mut entry = vec![0u8; ph_min];
    for i in 0..segments {
        read_at(&file, &mut entry, phoff + i * u64::from(phentsize))?;
        if layout.u32(&entry, 0) != PT_LOAD {
            continue;
        }
        let (offset, filesz) =
            if layout.wide { (layout.u64(&entry, 8), layout.u64(&entry, 32)) } else { (layout.word(&entry, 4), layout.word(&entry, 16)) };
        within(&|| format!("loadable segment {i} (program header {i})"), offset, filesz)?;
    }
    let mut entry = vec![0u8; sh_min];
    for i in 0..if shoff != 0 { sections } else { 0 } {
        read_at(&file, &mut entry, shoff + i * u64::from(shentsize))?;
        if layout.u32(&entry, 4) == SHT_NOBITS {
            continue;
        }
        let (offset, size) =
            if layout.wide { (layout.u64(&entry, 24), layout.u64(&entry, 32)) } else { (layout.word(&entry, 16), layout.word(&entry, 20)) };
        within(&|| format!("section {i}"), offset, size)?;
    }
    Ok(())
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    file.read_exact_at(buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary: an ELF file that is surely whole.
    fn whole() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn check(bytes: &[u8]) -> Result<(), ElfError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        check_complete(file.path())
    }

    #[test]
    fn a_whole_file_passes_and_every_truncation_is_refused() {
        let bytes = whole();
        check(&bytes).unwrap();
        // Cut anywhere — in the header, the segments, the sections, the section table — and
        // the check says so (the section header table comes last).
        for cut in [0, 3, 10, 40, 100, 4096, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let e = check(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, ElfError::Truncated { .. } | ElfError::NotElf), "cut at {cut}: {e}");
            if cut >= 16 {
                assert!(matches!(e, ElfError::Truncated { len, .. } if len == cut as u64), "cut at {cut}: {e}");
                assert!(e.to_string().contains("still being written"), "{e}");
            }
        }
    }

    #[test]
    fn other_files_are_not_elf_and_lying_headers_are_refused() {
        assert!(matches!(check(b"not an ELF file at all"), Err(ElfError::NotElf)));
        let mut bytes = whole();
        bytes[4] = 9;
        assert!(matches!(check(&bytes), Err(ElfError::Header(_))));
        // A program header table claimed far beyond the end.
        let mut bytes = whole();
        bytes[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        assert!(matches!(check(&bytes), Err(ElfError::Truncated { end: u64::MAX, .. })), "{:?}", check(&bytes));
    }
}
