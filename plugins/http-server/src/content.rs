//! What the server serves: the files of a directory and generated bodies, all loaded into memory
//! when the NF starts, and the mapping from a request-target to one of them.
//!
//! Everything is read at start so that answering never touches the file system (an NF's thread
//! must not block on disk) and so that nothing outside the root can ever be reached: a request
//! can only name an entry of the in-memory table. Each body is stored once; answers refer to it
//! by [`Id`] and only `Host::send` copies its bytes.
//!
//! Generated bodies are deterministic: byte `i` (from 0) of every generated body is
//! `(i * 31 + 7) % 251` ([`generated_byte`]), so a test can compute the expected bytes or their
//! SHA-256 without a copy of the file. 251 is prime and does not divide 31, so the pattern only
//! repeats every 251 bytes, never at a power of two.

use std::path::{Path, PathBuf};

/// Default bound on the bytes of all bodies together (`max_bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// One body the server can answer with.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Id(u32);

struct Entry {
    /// The decoded request path, e.g. `/img/logo.png`.
    path: Box<[u8]>,
    body: Box<[u8]>,
    content_type: &'static str,
}

/// The bodies, sorted by path for lookup by binary search (no hashing per request).
pub struct Content {
    entries: Vec<Entry>,
    total_bytes: u64,
}

impl Content {
    /// Loads every regular file under `root` (as `/relative/path`) and makes the `generated`
    /// bodies (path, size in bytes). Refuses, with a message that says what, an unreadable
    /// directory or file, a total over `max_bytes`, a bad generated path, and a path given
    /// twice. Symbolic links and names that begin with `.` are skipped: a link could lead out
    /// of the root, and dot files are usually not meant to be published.
    pub fn load(root: Option<&Path>, generated: &[(String, u64)], max_bytes: u64) -> Result<Content, String> {
        let mut content = Content { entries: Vec::new(), total_bytes: 0 };
        if let Some(root) = root {
            content.load_dir(root, max_bytes)?;
        }
        for (path, size) in generated {
            check_generated_path(path)?;
            content.reserve(*size, max_bytes, || format!("generated body `{path}`"))?;
            let body = generated_body(*size).map_err(|e| format!("generated body `{path}`: {e}"))?;
            content.entries.push(Entry { path: path.as_bytes().into(), body, content_type: content_type(path.as_bytes()) });
        }
        content.entries.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(pair) = content.entries.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(format!(
                "path `{}` is served twice (a file under `root` and a generated body)",
                String::from_utf8_lossy(&pair[0].path)
            ));
        }
        if content.entries.len() > u32::MAX as usize {
            return Err("too many files to serve".into());
        }
        Ok(content)
    }

    /// Counts `size` more bytes against `max_bytes`.
    fn reserve(&mut self, size: u64, max_bytes: u64, what: impl FnOnce() -> String) -> Result<(), String> {
        match self.total_bytes.checked_add(size) {
            Some(total) if total <= max_bytes => {
                self.total_bytes = total;
                Ok(())
            }
            _ => Err(format!(
                "{} ({size} bytes) would take the content over `max_bytes` ({max_bytes} bytes; {} already loaded)",
                what(),
                self.total_bytes
            )),
        }
    }

    /// Walks `root` without recursion (a deep tree cannot overflow the stack).
    fn load_dir(&mut self, root: &Path, max_bytes: u64) -> Result<(), String> {
        let mut dirs: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
        while let Some((dir, prefix)) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read directory `{}`: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot read directory `{}`: {e}", dir.display()))?;
                let name = name_bytes(&entry.file_name());
                if name.first() == Some(&b'.') {
                    continue;
                }
                let file_path = entry.path();
                let ty = entry.file_type().map_err(|e| format!("cannot read `{}`: {e}", file_path.display()))?;
                let mut path = prefix.clone();
                path.push(b'/');
                path.extend_from_slice(&name);
                if ty.is_dir() {
                    dirs.push((file_path, path));
                } else if ty.is_file() {
                    let len = entry.metadata().map_err(|e| format!("cannot read `{}`: {e}", file_path.display()))?.len();
                    self.reserve(len, max_bytes, || format!("file `{}`", file_path.display()))?;
                    let body = std::fs::read(&file_path).map_err(|e| format!("cannot read `{}`: {e}", file_path.display()))?;
                    // The file may have grown since its size was counted.
                    let grown = (body.len() as u64).saturating_sub(len);
                    self.reserve(grown, max_bytes, || format!("file `{}` (grown while read)", file_path.display()))?;
                    let content_type = content_type(&path);
                    self.entries.push(Entry { path: path.into(), body: body.into(), content_type });
                }
                // Symbolic links and special files are not served.
            }
        }
        Ok(())
    }

    /// The body at the decoded request path `path`, if any.
    pub fn find(&self, path: &[u8]) -> Option<Id> {
        self.entries.binary_search_by(|e| (*e.path).cmp(path)).ok().map(|i| Id(i as u32))
    }

    /// The bytes of body `id`.
    pub fn body(&self, id: Id) -> &[u8] {
        self.entries.get(id.0 as usize).map_or(&[], |e| &e.body)
    }

    /// The `Content-Type` of body `id`.
    pub fn content_type(&self, id: Id) -> &'static str {
        self.entries.get(id.0 as usize).map_or(OCTET_STREAM, |e| e.content_type)
    }

    /// Number of bodies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is served.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all bodies together.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

#[cfg(unix)]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().as_bytes().to_vec()
}

/// A generated body's path must be one a request can name: `/`, no `..` segment, nothing a
/// decoded request path cannot hold.
fn check_generated_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("generated path `{path}` {why}"));
    if !path.starts_with('/') {
        return bad("must begin with `/`");
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#') {
        return bad("must not hold spaces, control characters, `?` or `#`");
    }
    if path.split('/').any(|s| s == "..") {
        return bad("must not hold a `..` segment");
    }
    Ok(())
}

/// Byte `i` of every generated body.
pub fn generated_byte(i: u64) -> u8 {
    // Reduced first so that no `i` overflows; the same value as `(i * 31 + 7) % 251`.
    ((i % 251 * 31 + 7) % 251) as u8
}

/// A generated body of `len` bytes; fails (rather than aborting) when memory runs out.
pub fn generated_body(len: u64) -> Result<Box<[u8]>, String> {
    let len = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
    let mut body = Vec::new();
    body.try_reserve_exact(len).map_err(|e| format!("cannot allocate {len} bytes: {e}"))?;
    // Byte i + 1 is byte i + 31 (mod 251): no division per byte.
    let mut b = generated_byte(0);
    for _ in 0..len {
        body.push(b);
        b = if b >= 251 - 31 { b - (251 - 31) } else { b + 31 };
    }
    Ok(body.into_boxed_slice())
}

const OCTET_STREAM: &str = "application/octet-stream";

/// The `Content-Type` for a path, by its extension (case-insensitive).
pub fn content_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else { return OCTET_STREAM };
    let ext = &name[dot + 1..];
    let is = |e: &str| ext.eq_ignore_ascii_case(e.as_bytes());
    if is("html") || is("htm") {
        "text/html; charset=utf-8"
    } else if is("txt") {
        "text/plain; charset=utf-8"
    } else if is("css") {
        "text/css; charset=utf-8"
    } else if is("js") || is("mjs") {
        "text/javascript; charset=utf-8"
    } else if is("json") {
        "application/json"
    } else if is("png") {
        "image/png"
    } else if is("jpg") || is("jpeg") {
        "image/jpeg"
    } else {
        OCTET_STREAM
    }
}

/// Why a request-target names nothing that could be served.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Not a path (e.g. `*`), or a bad percent-encoding: 400.
    Malformed,
    /// A `..` segment, after percent-decoding: refused (400), whatever it would lead to.
    Traversal,
}

/// Turns a request-target into the path to look up, written into `out` (reused, so no
/// allocation once it has grown): the absolute-form's scheme and authority dropped, the query
/// cut off, percent-escapes decoded (before `..` is looked for, so `%2e%2e` is caught too), and
/// `index.html` appended to a path that ends with `/`.
pub fn request_path(target: &[u8], out: &mut Vec<u8>) -> Result<(), TargetError> {
    out.clear();
    let mut path = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            path = rest.iter().position(|&b| b == b'/').map_or(&b"/"[..], |i| &rest[i..]);
        }
    }
    if path.first() != Some(&b'/') {
        return Err(TargetError::Malformed);
    }
    let end = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(path.len());
    let mut i = 0;
    while i < end {
        let b = path[i];
        if b == b'%' {
            let hex = |j: usize| path.get(j).filter(|_| j < end).and_then(|&c| (c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else { return Err(TargetError::Malformed) };
            let decoded = (hi * 16 + lo) as u8;
            if decoded == 0 {
                return Err(TargetError::Malformed);
            }
            out.push(decoded);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.split(|&b| b == b'/').any(|segment| segment == b"..") {
        return Err(TargetError::Traversal);
    }
    if out.last() == Some(&b'/') {
        out.extend_from_slice(b"index.html");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(target: &str) -> Result<String, TargetError> {
        let mut out = Vec::new();
        request_path(target.as_bytes(), &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn targets_become_decoded_paths() {
        assert_eq!(path("/").unwrap(), "/index.html");
        assert_eq!(path("/a/b.txt?x=1#f").unwrap(), "/a/b.txt");
        assert_eq!(path("/sub/").unwrap(), "/sub/index.html");
        assert_eq!(path("/with%20space%2Ftoo").unwrap(), "/with space/too");
        assert_eq!(path("HTTP://example.com:80/x.html?q").unwrap(), "/x.html");
        assert_eq!(path("http://example.com").unwrap(), "/index.html");
        assert_eq!(path("/a%3f?b").unwrap(), "/a?");
    }

    #[test]
    fn traversal_and_malformed_targets_are_refused() {
        for t in ["/..", "/../etc/passwd", "/a/../../b", "/%2e%2e/x", "/%2E%2e%2fetc", "/a/..%2f..%2fb", "http://h/../x"] {
            assert_eq!(path(t), Err(TargetError::Traversal), "{t}");
        }
        for t in ["*", "x", "", "/%", "/%4", "/%zz", "/%00", "/a%2?x", "example.com/x"] {
            assert_eq!(path(t), Err(TargetError::Malformed), "{t}");
        }
        // `..` inside a name is no traversal.
        assert_eq!(path("/a..b/..c").unwrap(), "/a..b/..c");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type(b"/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"/A.TXT"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"/s.css"), "text/css; charset=utf-8");
        assert_eq!(content_type(b"/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type(b"/d.json"), "application/json");
        assert_eq!(content_type(b"/i.png"), "image/png");
        assert_eq!(content_type(b"/i.jpg"), "image/jpeg");
        assert_eq!(content_type(b"/i.jpeg"), "image/jpeg");
        assert_eq!(content_type(b"/dir.html/blob"), OCTET_STREAM);
        assert_eq!(content_type(b"/8k"), OCTET_STREAM);
        assert_eq!(content_type(b"/x."), OCTET_STREAM);
    }

    #[test]
    fn generated_bodies_follow_the_documented_formula() {
        let body = generated_body(100_000).unwrap();
        for (i, &b) in body.iter().enumerate() {
            assert_eq!(u64::from(b), (i as u64 * 31 + 7) % 251, "byte {i}");
        }
        assert_eq!(&body[..4], &[7, 38, 69, 100]);
        assert_eq!(u128::from(generated_byte(u64::MAX)), (u128::from(u64::MAX) * 31 + 7) % 251);
        assert!(generated_body(0).unwrap().is_empty());
    }

    #[test]
    fn a_directory_loads_into_memory_and_is_looked_up_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/deeper/a.json"), "{}").unwrap();
        std::fs::write(dir.path().join(".secret"), "no").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let c = Content::load(Some(dir.path()), &[("/8k".into(), 8192)], 1 << 20).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.total_bytes(), 11 + 2 + 8192);
        let index = c.find(b"/index.html").unwrap();
        assert_eq!((c.body(index), c.content_type(index)), (&b"<h1>hi</h1>"[..], "text/html; charset=utf-8"));
        let a = c.find(b"/sub/deeper/a.json").unwrap();
        assert_eq!((c.body(a), c.content_type(a)), (&b"{}"[..], "application/json"));
        assert_eq!(c.body(c.find(b"/8k").unwrap()).len(), 8192);
        for missing in [&b"/.secret"[..], b"/passwd", b"/sub", b"/sub/", b"index.html", b""] {
            assert!(c.find(missing).is_none(), "{missing:?}");
        }
    }

    #[test]
    fn loading_refuses_what_it_cannot_serve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.bin"), vec![0u8; 1000]).unwrap();
        let err = Content::load(Some(dir.path()), &[], 999).err().unwrap();
        assert!(err.contains("max_bytes") && err.contains("big.bin"), "{err}");
        let err = Content::load(Some(dir.path()), &[("/g".into(), 500)], 1400).err().unwrap();
        assert!(err.contains("max_bytes") && err.contains("/g"), "{err}");
        let err = Content::load(Some(&dir.path().join("nope")), &[], 1 << 20).err().unwrap();
        assert!(err.contains("cannot read directory") && err.contains("nope"), "{err}");
        let err = Content::load(Some(dir.path()), &[("/big.bin".into(), 1)], 1 << 20).err().unwrap();
        assert!(err.contains("served twice"), "{err}");
        for bad in ["x", "/a/../b", "/a b", "/q?x"] {
            let err = Content::load(None, &[(bad.into(), 1)], 1 << 20).err().unwrap();
            assert!(err.contains("generated path"), "{bad}: {err}");
        }
        let err = Content::load(None, &[("/a".into(), u64::MAX), ("/b".into(), 2)], u64::MAX).err().unwrap();
        assert!(err.contains("memory") || err.contains("allocate") || err.contains("max_bytes"), "{err}");
    }
}
