//! The files a run reads and writes, checked against each other before the run creates any:
//! an output that is also an input would destroy the input as it is read, and two writers of
//! one file interleave (or truncate) each other's records.
//!
//! Inputs are the config itself and the input captures; outputs are `[output] pcap`, the
//! `--report` file, and every NF argument its plugin declares as an output
//! (`Plugin::OUTPUTS`; `-` and `""` are not paths). Two paths are one file when they name
//! the same inode (hard links and symlinks included), or, for files that do not exist yet, the
//! same place once the existing part of the path is resolved. Devices, pipes and sockets
//! (`/dev/null`, `/dev/stdout`) may be named any number of times: writing them clobbers no file.

use crate::config::Config;
use crate::plugin::Plugin;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// A file the run uses: what names it (for messages) and its path as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUse {
    pub role: String,
    pub path: PathBuf,
}

/// Two uses of one file that cannot both happen.
#[derive(Debug, Error)]
pub enum FileClash {
    #[error("{output} ({}) is also {input} ({}): writing it would destroy the input; choose another output path", .output_path.display(), .input_path.display())]
    OutputIsInput { output: String, output_path: PathBuf, input: String, input_path: PathBuf },
    #[error("{first} ({}) and {second} ({}) are the same file: each writer would clobber the other's records; give each its own path", .first_path.display(), .second_path.display())]
    TwoWriters { first: String, first_path: PathBuf, second: String, second_path: PathBuf },
}

/// What a run reads and writes.
#[derive(Debug, Clone, Default)]
pub struct RunFiles {
    pub reads: Vec<FileUse>,
    pub writes: Vec<FileUse>,
}

impl RunFiles {
    /// The files of `config` (read from `config_path`) with its NFs' `plugins`, in config order.
    pub fn of<'a>(config: &Config, config_path: &Path, plugins: impl IntoIterator<Item = &'a Plugin>) -> RunFiles {
        let mut reads = vec![FileUse { role: "the config".into(), path: config_path.to_path_buf() }];
        for (i, path) in config.input.pcap.iter().enumerate() {
            let role = if config.input.pcap.len() == 1 { "[input] pcap".to_string() } else { format!("[input] pcap #{}", i + 1) };
            reads.push(FileUse { role, path: path.clone() });
        }
        let mut writes = Vec::new();
        if let Some(path) = &config.output.pcap {
            writes.push(FileUse { role: "[output] pcap".into(), path: path.clone() });
        }
        if let Some(path) = &config.input.trace {
            writes.push(FileUse { role: "[input] trace".into(), path: path.clone() });
        }
        if let Some(path) = config.dpdk.as_ref().and_then(|d| d.trace.as_ref()) {
            writes.push(FileUse { role: "[dpdk] trace".into(), path: path.clone() });
        }
        for (i, (nf, plugin)) in config.nfs.iter().zip(plugins).enumerate() {
            for arg in &plugin.outputs {
                let Some(toml::Value::String(value)) = nf.args.get(arg.as_str()) else { continue };
                if value.is_empty() || value == "-" {
                    continue;
                }
                writes.push(FileUse { role: format!("[[nf]] #{} ({}) args.{arg}", i + 1, nf.display_name()), path: PathBuf::from(value) });
            }
        }
        RunFiles { reads, writes }
    }

    /// Refuses an output that is also an input, or a file with two writers.
    pub fn check(&self) -> Result<(), FileClash> {
        let writes: Vec<(&FileUse, Option<Identity>)> = self.writes.iter().map(|w| (w, Identity::of(&w.path))).collect();
        let reads: Vec<(&FileUse, Option<Identity>)> = self.reads.iter().map(|r| (r, Identity::of(&r.path))).collect();
        for (w, wid) in &writes {
            let Some(wid) = wid else { continue };
            if let Some((r, _)) = reads.iter().find(|(_, rid)| rid.as_ref() == Some(wid)) {
                return Err(FileClash::OutputIsInput {
                    output: w.role.clone(),
                    output_path: w.path.clone(),
                    input: r.role.clone(),
                    input_path: r.path.clone(),
                });
            }
        }
        for (i, (w, wid)) in writes.iter().enumerate() {
            let Some(wid) = wid else { continue };
            if let Some((first, _)) = writes[..i].iter().find(|(_, id)| id.as_ref() == Some(wid)) {
                return Err(FileClash::TwoWriters {
                    first: first.role.clone(),
                    first_path: first.path.clone(),
                    second: w.role.clone(),
                    second_path: w.path.clone(),
                });
            }
        }
        Ok(())
    }
}

/// What makes two paths one file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// An existing regular file.
    Inode { dev: u64, ino: u64 },
    /// A file that does not exist yet, where it would be created.
    Place(PathBuf),
}

impl Identity {
    /// None for what is not a regular file (devices, pipes, sockets, directories): those are
    /// not clobbered by being named twice, and a directory is the NF's own error to report.
    fn of(path: &Path) -> Option<Identity> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Some(Identity::Inode { dev: m.dev(), ino: m.ino() }),
            Ok(_) => None,
            // Writers create missing directories: `new/../in.pcap` is `in.pcap` once they have.
            Err(_) => {
                let place = resolve(path);
                match std::fs::metadata(&place) {
                    Ok(m) if m.is_file() => Some(Identity::Inode { dev: m.dev(), ino: m.ino() }),
                    Ok(_) => None,
                    Err(_) => Some(Identity::Place(place)),
                }
            }
        }
    }
}

/// `path` made absolute, with its longest existing ancestor resolved (symlinks, `..`) and the
/// rest normalised as written.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf());
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = base.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                base = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(paths: &[(&str, &Path)]) -> Vec<FileUse> {
        paths.iter().map(|(role, path)| FileUse { role: role.to_string(), path: path.to_path_buf() }).collect()
    }

    #[test]
    fn one_file_by_any_name_is_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        std::fs::write(&input, b"x").unwrap();
        let link = dir.path().join("link.pcap");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let hard = dir.path().join("hard.pcap");
        std::fs::hard_link(&input, &hard).unwrap();
        let dotted = dir.path().join("sub/../in.pcap");
        for alias in [&input, &link, &hard, &dotted] {
            let files = RunFiles { reads: uses(&[("[input] pcap", &input)]), writes: uses(&[("[output] pcap", alias)]) };
            let e = files.check().unwrap_err().to_string();
            assert!(e.contains("[output] pcap") && e.contains("is also [input] pcap") && e.contains("destroy the input"), "{e}");
        }
        // Files yet to be made, through different spellings of one place.
        let new = dir.path().join("out/new.jsonl");
        let other = dir.path().join("out/./x/../new.jsonl");
        let files = RunFiles { reads: vec![], writes: uses(&[("a", &new), ("b", &other)]) };
        assert!(matches!(files.check(), Err(FileClash::TwoWriters { .. })), "{:?}", files.check());
        // Different files, and devices named twice, are fine.
        let files = RunFiles {
            reads: uses(&[("[input] pcap", &input)]),
            writes: uses(&[
                ("a", &new),
                ("b", &dir.path().join("out/other.jsonl")),
                ("c", Path::new("/dev/null")),
                ("d", Path::new("/dev/null")),
            ]),
        };
        files.check().unwrap();
    }
}
