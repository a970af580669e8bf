//! Loading NF plugins: find the library, check it against this host's ABI, read its descriptor
//! and create instances.
//!
//! [`crate::elf`] first checks that the file is whole, so that a library still being written is
//! refused rather than mapped. abi_stable checks the mbox-abi version and the full layout of
//! every type the plugin exchanges before any plugin code runs; its long report is turned into
//! one line that says what to rebuild. Libraries are never unloaded (abi_stable's design): a loaded plugin stays
//! mapped until the process exits.

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::RawLibrary;
use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::RResult;
use mbox_abi::plugin::{EventLayouts, EVENT_LAYOUTS, EVENT_LAYOUTS_SYMBOL};
use mbox_abi::{NfBox, NfDescriptor, NfInit, PluginModuleRef, ABI_CRATE_VERSION};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a plugin could not be used.
#[derive(Debug, Error)]
pub enum PluginError {
    /// `hint`: what to build or fix (see [`not_found_hint`]).
    #[error("plugin `{name}`: no library at {path}{hint}")]
    NotFound { name: String, path: PathBuf, hint: String },
    #[error("plugin `{name}` ({path}): cannot load the library: {reason}")]
    Open { name: String, path: PathBuf, reason: String },
    #[error("plugin `{name}` ({path}) is not an mbox NF plugin (it exports no mbox root module)")]
    NotAPlugin { name: String, path: PathBuf },
    #[error("plugin `{name}` ({path}) was built against mbox-abi {found}; this mbox needs {expected}: rebuild the plugin against this mbox's mbox-abi")]
    Version { name: String, path: PathBuf, found: String, expected: String },
    #[error("plugin `{name}` ({path}) was built against a different mbox-abi (its types differ from mbox-abi {expected} in this mbox): rebuild the plugin against this mbox's mbox-abi")]
    Layout { name: String, path: PathBuf, expected: String, detail: String },
    #[error("NF `{instance}` could not be created: {reason}")]
    Create { instance: String, reason: String },
}

/// A loaded plugin library.
pub struct Plugin {
    pub path: PathBuf,
    module: PluginModuleRef,
    pub descriptor: NfDescriptor,
    /// The arguments whose values are files the NF writes (none for plugins built before
    /// plugins could say).
    pub outputs: Vec<String>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.path).field("descriptor", &self.descriptor).finish()
    }
}

/// The library file a plugin called `name` has in `dir` (`flow-stats` -> `libflow_stats.so`).
pub fn library_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}{}{}", std::env::consts::DLL_PREFIX, name.replace('-', "_"), std::env::consts::DLL_SUFFIX))
}

/// The cargo package whose library is `file` (`libflow_stats.so` -> `flow-stats`: cargo
/// writes a package's dashes as underscores), if it has a library's name.
fn package_of(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = name.strip_prefix(std::env::consts::DLL_PREFIX)?.strip_suffix(std::env::consts::DLL_SUFFIX)?;
    Some(stem.replace('_', "-"))
}

/// What to tell a user whose plugin library `path` is not there: a directory is not a library;
/// a library of a near name in the same directory is likely the one meant; otherwise, the
/// cargo command that builds it.
pub fn not_found_hint(path: &Path) -> String {
    if path.is_dir() {
        return " (it is a directory: `path` names the library file itself, e.g. target/release/libmy_nf.so)".into();
    }
    let wanted = package_of(path);
    let build = match &wanted {
        Some(package) => format!("build it with `cargo build --release -p {package}`, or fix `path`/`plugin_dir`"),
        None => "fix `path`/`plugin_dir`".into(),
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let present: Vec<String> =
        std::fs::read_dir(dir).map(|d| d.flatten().filter_map(|e| package_of(&e.path())).collect()).unwrap_or_default();
    let wanted = wanted.unwrap_or_default();
    match crate::hint::nearest(&wanted, present.iter().map(String::as_str)).filter(|&p| p != wanted) {
        Some(near) => format!(" (did you mean `{near}`? its library is in {}; or {build})", dir.display()),
        None => format!(" ({build})"),
    }
}

/// The directory of the running executable, where cargo puts the plugins it builds.
pub fn default_plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test and bench binaries live one level down, in target/<profile>/deps.
    if dir.file_name().is_some_and(|n| n == "deps") {
        return dir.parent().map(Path::to_path_buf).unwrap_or(dir);
    }
    dir
}

impl Plugin {
    /// Loads the plugin at `path`; `name` is what the config calls it (for messages).
    pub fn load(name: &str, path: &Path) -> Result<Plugin, PluginError> {
        if !path.is_file() {
            return Err(PluginError::NotFound { name: name.to_string(), path: path.to_path_buf(), hint: not_found_hint(path) });
        }
        // The loader maps the file's segments as they are: one cut short (still being written)
        // would kill mbox with SIGBUS when touched, so it is refused before it is mapped.
        crate::elf::check_complete(path).map_err(|e| PluginError::Open {
            name: name.to_string(),
            path: path.to_path_buf(),
            reason: format!("{e}; wait for the build or copy to finish, or rebuild it"),
        })?;
        let err = |e: LibraryError| match e {
            LibraryError::OpenError { err, .. } => {
                PluginError::Open { name: name.to_string(), path: path.to_path_buf(), reason: err.to_string() }
            }
            LibraryError::GetSymbolError { .. } => PluginError::NotAPlugin { name: name.to_string(), path: path.to_path_buf() },
            LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => PluginError::Version {
                name: name.to_string(),
                path: path.to_path_buf(),
                found: actual_version.to_string(),
                expected: expected_version.to_string(),
            },
            LibraryError::AbiInstability(detail) => PluginError::Layout {
                name: name.to_string(),
                path: path.to_path_buf(),
                expected: ABI_CRATE_VERSION.to_string(),
                detail: detail.to_string(),
            },
            other => PluginError::Open { name: name.to_string(), path: path.to_path_buf(), reason: other.to_string().trim().to_string() },
        };
        let header = lib_header_from_path(path).map_err(err)?;
        let module = header.init_root_module::<PluginModuleRef>().map_err(err)?;
        let descriptor = (module.descriptor())();
        check_event_layouts(path).map_err(|detail| PluginError::Layout {
            name: name.to_string(),
            path: path.to_path_buf(),
            expected: ABI_CRATE_VERSION.to_string(),
            detail,
        })?;
        let outputs = module.outputs().map(|f| f().into_iter().map(String::from).collect()).unwrap_or_default();
        Ok(Plugin { path: path.to_path_buf(), module, descriptor, outputs })
    }

    /// Creates an NF instance.
    pub fn create(&self, init: &NfInit<'_>) -> Result<NfBox, PluginError> {
        match (self.module.create())(init) {
            RResult::ROk(nf) => Ok(nf),
            RResult::RErr(reason) => Err(PluginError::Create { instance: init.instance.to_string(), reason: reason.into_string() }),
        }
    }
}

/// Compares the event structs' layouts the plugin at `path` was built with (its
/// [`EVENT_LAYOUTS_SYMBOL`]) with this host's, type by type by name: the root module does not
/// reach them, so abi_stable's load-time check did not. A plugin built before the symbol
/// existed has none and passes (the root module's check and the version are all there is). The
/// library is already loaded: this opens it again for the symbol only.
fn check_event_layouts(path: &Path) -> Result<(), String> {
    let raw = RawLibrary::load_at(path).map_err(|e| e.to_string())?;
    // SAFETY: `export_nf!` defines the symbol as an `EventLayouts` static; a data symbol's
    // value is its address.
    let Ok(symbol) = (unsafe { raw.get::<*const EventLayouts>(EVENT_LAYOUTS_SYMBOL) }) else { return Ok(()) };
    // SAFETY: the static lives in the library, which stays loaded (abi_stable never unloads).
    let theirs = unsafe { (**symbol).as_slice() };
    for &ours in EVENT_LAYOUTS {
        if let Some(&other) = theirs.iter().find(|l| l.name() == ours.name()) {
            check_layout_compatibility(ours, other).map_err(|e| format!("{}: {e}", ours.name()))?;
        }
    }
    Ok(())
}
