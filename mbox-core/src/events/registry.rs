//! The registry of event types: every path known to this run, its packed code, and a dense
//! index the host uses to look up routes in a table.
//!
//! It starts with the built-in tree; NFs add their own types (under any node) when they load.

use mbox_abi::{builtin, EventType, TypeBinding};
use std::collections::HashMap;
use thiserror::Error;

/// Why a type path could not be registered or resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("`{0}` is not a valid type path (UPPER_CASE segments separated by `/`, e.g. ALERT/MY_FINDING)")]
    BadPath(String),
    #[error("`{path}` cannot be registered: its parent `{parent}` does not exist")]
    NoParent { path: String, parent: String },
    #[error("`{0}` cannot be registered: the type tree allows at most 7 levels and 255 children per node")]
    TreeFull(String),
    /// `hint`: which bundled NF publishes it, or the known type nearest to it (or nothing).
    #[error("unknown event type `{path}`{hint}")]
    Unknown { path: String, hint: String },
}

/// Types the bundled NFs publish (registered only when the NF is loaded): a config that
/// subscribes to one without its NF is told which NF to add. `tests/bad_input.rs` checks the
/// list against the plugins' own descriptors.
pub const BUNDLED_PUBLISHERS: &[(&str, &str)] =
    &[(mbox_abi::FLOW_TYPE_PATH, "dpi"), (mbox_abi::SIG_MATCH_PATH, "sig-match"), ("ALERT/HEAVY_HITTER", "heavy-hitter")];

/// One registered type.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub path: String,
    pub ty: EventType,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct TypeRegistry {
    types: Vec<TypeInfo>,
    by_path: HashMap<String, usize>,
    by_code: HashMap<EventType, usize>,
}

impl Default for TypeRegistry {
    fn default() -> Self {
        TypeRegistry::with_builtins()
    }
}

impl TypeRegistry {
    /// The built-in tree.
    pub fn with_builtins() -> TypeRegistry {
        let mut r = TypeRegistry { types: Vec::new(), by_path: HashMap::new(), by_code: HashMap::new() };
        for (path, ty) in builtin::ALL {
            r.add(path, *ty);
        }
        r
    }

    fn add(&mut self, path: &str, ty: EventType) -> usize {
        let idx = self.types.len();
        self.types.push(TypeInfo { path: path.to_string(), ty });
        self.by_path.insert(path.to_string(), idx);
        self.by_code.insert(ty, idx);
        idx
    }

    /// Number of registered types; dense indices run from 0 to this.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// All types, by dense index.
    pub fn types(&self) -> &[TypeInfo] {
        &self.types
    }

    /// Dense index of `path`.
    pub fn index_of(&self, path: &str) -> Result<usize, RegistryError> {
        self.by_path.get(path).copied().ok_or_else(|| RegistryError::Unknown { path: path.to_string(), hint: self.hint_for(path) })
    }

    /// What to say of an unknown `path`: the bundled NF that publishes it, or the known type
    /// it is nearest to.
    fn hint_for(&self, path: &str) -> String {
        match BUNDLED_PUBLISHERS.iter().find(|(p, _)| path == *p || is_below(path, p)) {
            Some((published, nf)) => format!("; `{published}` is published by the `{nf}` NF: add an [[nf]] with plugin = \"{nf}\""),
            None => crate::hint::did_you_mean(path, self.types.iter().map(|t| t.path.as_str())),
        }
    }

    /// Dense index of a type code.
    pub fn index_of_type(&self, ty: EventType) -> Option<usize> {
        self.by_code.get(&ty).copied()
    }

    /// The type at `path`.
    pub fn type_of(&self, path: &str) -> Result<EventType, RegistryError> {
        self.index_of(path).map(|i| self.types[i].ty)
    }

    /// The path of dense index `idx`.
    pub fn path(&self, idx: usize) -> &str {
        &self.types[idx].path
    }

    /// Registers `path` if it is new (its parent must exist); returns its dense index.
    pub fn register(&mut self, path: &str) -> Result<usize, RegistryError> {
        if let Some(&idx) = self.by_path.get(path) {
            return Ok(idx);
        }
        if !valid_path(path) {
            return Err(RegistryError::BadPath(path.to_string()));
        }
        let parent_path = path.rsplit_once('/').map_or("", |(p, _)| p);
        let parent = if parent_path.is_empty() {
            EventType::ROOT
        } else {
            self.type_of(parent_path).map_err(|_| RegistryError::NoParent { path: path.to_string(), parent: parent_path.to_string() })?
        };
        // The next free child index under the parent.
        let used = self.types.iter().filter(|t| t.ty.parent() == Some(parent)).count();
        let ty = u8::try_from(used + 1).ok().and_then(|i| parent.child(i)).ok_or_else(|| RegistryError::TreeFull(path.to_string()))?;
        Ok(self.add(path, ty))
    }

    /// Every type as a (path, code) binding, for `NfInit::types`.
    pub fn bindings(&self) -> Vec<TypeBinding<'_>> {
        self.types.iter().map(|t| TypeBinding { path: t.path.as_str().into(), ty: t.ty }).collect()
    }
}

/// Whether type path `path` lies below `above` (`ALERT/SIG_MATCH` below `ALERT`).
fn is_below(path: &str, above: &str) -> bool {
    path.strip_prefix(above).is_some_and(|rest| rest.starts_with('/'))
}

/// For a subscription to `path` that nothing publishes: `; the bundled NFs `a` and `b` publish
/// it or below it` where some do, or nothing.
pub fn bundled_publishers_hint(path: &str) -> String {
    let nfs: Vec<String> =
        BUNDLED_PUBLISHERS.iter().filter(|(p, _)| *p == path || is_below(p, path)).map(|(_, nf)| format!("`{nf}`")).collect();
    match nfs.as_slice() {
        [] => String::new(),
        [one] => format!("; the bundled NF {one} publishes it"),
        more => format!("; the bundled NFs {} publish below it", more.join(" and ")),
    }
}

fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf_types_go_under_existing_nodes() {
        let mut r = TypeRegistry::with_builtins();
        let a = r.register("ALERT/HEAVY_HITTER").unwrap();
        let b = r.register("ALERT/PORT_SCAN").unwrap();
        assert_ne!(r.types()[a].ty, r.types()[b].ty);
        assert!(r.types()[a].ty.is_a(builtin::ALERT));
        assert_eq!(r.register("ALERT/HEAVY_HITTER").unwrap(), a, "registering twice is idempotent");
        let c = r.register("ALERT/HEAVY_HITTER/SEVERE").unwrap();
        assert!(r.types()[c].ty.is_a(r.types()[a].ty));
        let top = r.register("CUSTOM").unwrap();
        assert_eq!(r.types()[top].ty.depth(), 1);
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        let mut r = TypeRegistry::with_builtins();
        assert_eq!(r.register("alert/x"), Err(RegistryError::BadPath("alert/x".into())));
        assert_eq!(r.register("ALERT//X"), Err(RegistryError::BadPath("ALERT//X".into())));
        assert!(matches!(r.register("NOPE/X"), Err(RegistryError::NoParent { .. })));
        assert_eq!(r.index_of("PKT/ICMP"), Err(RegistryError::Unknown { path: "PKT/ICMP".into(), hint: String::new() }));
        let mut deep = String::from("A");
        r.register(&deep).unwrap();
        for _ in 0..6 {
            deep.push_str("/A");
            r.register(&deep).unwrap();
        }
        deep.push_str("/A");
        assert!(matches!(r.register(&deep), Err(RegistryError::TreeFull(_))));
    }
}
