//! The plugin's root module: what a plugin library exports, and the glue that builds it.
//!
//! A plugin crate implements [`Plugin`] for its NF type and invokes [`export_nf!`](crate::export_nf).
//! The host loads the library with abi_stable, which checks this crate's version and the full
//! layout of every type reachable from [`PluginModule`] before anything is called, and then the
//! layouts of the event structs ([`EventLayouts`]), which NFs cast from `EventHeader` and the
//! root module does not reach.

use crate::event_type::EventType;
use crate::events::{
    AlertEvent, FlowEvent, FlowQuicEvent, FlowTcpEvent, FlowTypeEvent, PktEvent, PktQuicEvent, PktTcpEvent, SigMatchEvent, StreamDataEvent,
    StreamEndEvent, StreamGapEvent,
};
use crate::nf::{
    guard, BindRequest, CommandEvent, CommandReply, Guarded, LogRequest, NetworkFunction, NfBox, NfObject_TO, StreamRequest,
    SubscribeRequest,
};
use abi_stable::type_layout::TypeLayout;
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    sabi_types::VersionStrings,
    std_types::{RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// What an NF declares about itself.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct NfDescriptor {
    pub name: RString,
    pub version: RString,
    pub description: RString,
    /// Type paths the NF subscribes to by default (a config may override them).
    pub subscribes: RVec<RString>,
    /// Type paths the NF publishes; paths that do not exist yet are registered at load.
    pub publishes: RVec<RString>,
    /// True when the NF never drops or modifies: it then runs in parallel with other readers.
    pub read_only: bool,
}

/// A type path and the code the host assigned to it.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct TypeBinding<'a> {
    pub path: RStr<'a>,
    pub ty: EventType,
}

/// What the host tells an NF when creating it.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct NfInit<'a> {
    /// The instance name from the config.
    pub instance: RStr<'a>,
    /// The instance's `args` table from the config, as JSON (`{}` when absent).
    pub args_json: RStr<'a>,
    /// This NF's number (1-based, config order), as found in `EventHeader::publisher`.
    pub nf_number: u16,
    /// Number of stack shards; `FlowRef::shard` is below it.
    pub shards: u32,
    /// Flow slots per shard: the flow table's, then those of the connections a `[[service]]`
    /// terminates; `FlowRef::slot` is below it.
    pub flow_slots: u32,
    /// Every registered type, including the ones this NF publishes.
    pub types: RSlice<'a, TypeBinding<'a>>,
    /// True when this instance replaces a running one (`mboxctl reload`): append to output
    /// files rather than truncate them.
    pub replacing: bool,
}

impl NfInit<'_> {
    /// The code of the type at `path`, e.g. `"ALERT/HEAVY_HITTER"`.
    pub fn type_of(&self, path: &str) -> Option<EventType> {
        self.types.iter().find(|b| b.path.as_str() == path).map(|b| b.ty)
    }
}

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub descriptor: extern "C" fn() -> NfDescriptor,
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(init: &NfInit<'_>) -> RResult<NfBox, RString>,
    /// The arguments whose values are files the NF writes ([`Plugin::OUTPUTS`]). After the
    /// last prefix field: a plugin built before it existed lacks it and loads all the same
    /// (it declares no outputs).
    #[sabi(missing_field(option))]
    pub outputs: extern "C" fn() -> RVec<RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "mbox_nf";
    const NAME: &'static str = "mbox_nf";
    #[cfg(not(feature = "simulate-version-change"))]
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
    /// An mbox-abi older than any this host accepts (for 0.x abi_stable refuses a library
    /// whose minor is below the host's; a newer one is left to the layout checks), for the
    /// fixture that checks the host refuses a plugin by its version.
    #[cfg(feature = "simulate-version-change")]
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.0.1");
}

/// Static facts about a plugin's NF.
pub struct PluginInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub subscribes: &'static [&'static str],
    pub publishes: &'static [&'static str],
    pub read_only: bool,
}

/// Implemented by a plugin's NF type; [`export_nf!`](crate::export_nf) does the rest.
pub trait Plugin: NetworkFunction + Sized {
    const INFO: PluginInfo;

    /// Names of the arguments (in the config's `args`) whose string values are paths of files
    /// the NF writes, e.g. `&["output"]`. The host refuses, before the run, an output that is
    /// also another NF's output, the `[output] pcap`, an input capture or the config itself
    /// (`-` and `""` are not paths). The default: none.
    const OUTPUTS: &'static [&'static str] = &[];

    /// Builds the NF from the config's arguments.
    fn create(init: &NfInit<'_>) -> Result<Self, String>;
}

fn strings(list: &[&str]) -> RVec<RString> {
    list.iter().map(|s| RString::from(*s)).collect()
}

extern "C" fn descriptor_glue<P: Plugin>() -> NfDescriptor {
    NfDescriptor {
        name: P::INFO.name.into(),
        version: P::INFO.version.into(),
        description: P::INFO.description.into(),
        subscribes: strings(P::INFO.subscribes),
        publishes: strings(P::INFO.publishes),
        read_only: P::INFO.read_only,
    }
}

extern "C" fn outputs_glue<P: Plugin>() -> RVec<RString> {
    strings(P::OUTPUTS)
}

extern "C" fn create_glue<P: Plugin>(init: &NfInit<'_>) -> RResult<NfBox, RString> {
    quiet_panics();
    guard(|| {
        let nf = P::create(init)?;
        Ok(NfObject_TO::from_value(Guarded(nf), TD_Opaque))
    })
}

/// Makes this library's panics print their message and place only. A plugin has its own copy
/// of std: with `RUST_BACKTRACE` set, std's own hook symbolizes a backtrace at the first
/// panic and keeps the debug information of every object in the process, some 80 MiB, in
/// that copy, and each reload maps a fresh copy (measured in the soak, docs/performance.md).
/// The host disables the NF and logs the message either way; `MBOX_NF_BACKTRACE=1` keeps
/// std's hook, backtraces and all, for an author debugging a panic.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("MBOX_NF_BACKTRACE").is_some_and(|v| v == "1") {
            return;
        }
        std::panic::set_hook(Box::new(|info| eprintln!("NF {info}")));
    });
}

/// Every event struct NFs read or publish, as abi_stable describes it.
pub const EVENT_LAYOUTS: &[&TypeLayout] = &[
    <PktEvent as StableAbi>::LAYOUT,
    <PktTcpEvent as StableAbi>::LAYOUT,
    <PktQuicEvent as StableAbi>::LAYOUT,
    <FlowEvent as StableAbi>::LAYOUT,
    <FlowTcpEvent as StableAbi>::LAYOUT,
    <FlowQuicEvent as StableAbi>::LAYOUT,
    <StreamDataEvent as StableAbi>::LAYOUT,
    <StreamGapEvent as StableAbi>::LAYOUT,
    <StreamEndEvent as StableAbi>::LAYOUT,
    <AlertEvent as StableAbi>::LAYOUT,
    <FlowTypeEvent as StableAbi>::LAYOUT,
    <SigMatchEvent as StableAbi>::LAYOUT,
    <SubscribeRequest as StableAbi>::LAYOUT,
    <StreamRequest as StableAbi>::LAYOUT,
    <LogRequest as StableAbi>::LAYOUT,
    <BindRequest as StableAbi>::LAYOUT,
    <CommandEvent as StableAbi>::LAYOUT,
    <CommandReply as StableAbi>::LAYOUT,
];

/// The event-struct layouts a plugin was built with, exported by [`export_nf!`](crate::export_nf)
/// as the symbol [`EVENT_LAYOUTS_SYMBOL`]. A symbol of its own rather than a root-module field:
/// abi_stable refuses a plugin whose root module has fewer fields than the host's, so a field
/// would shut out every plugin built before it. This struct's shape is frozen; the host checks
/// each layout it knows by the type's name, so a later ABI may list more.
#[repr(C)]
pub struct EventLayouts {
    pub len: usize,
    pub layouts: *const &'static TypeLayout,
}

// SAFETY: it points to immutable statics.
unsafe impl Sync for EventLayouts {}

impl EventLayouts {
    /// This build's layouts.
    pub const fn of_this_build() -> EventLayouts {
        EventLayouts { len: EVENT_LAYOUTS.len(), layouts: EVENT_LAYOUTS.as_ptr() }
    }

    /// The layouts as a slice.
    ///
    /// # Safety
    /// `self` must come from [`EventLayouts::of_this_build`] (in any library still loaded).
    pub unsafe fn as_slice(&self) -> &'static [&'static TypeLayout] {
        // SAFETY: the caller's contract: `layouts` points to `len` entries of a static.
        unsafe { core::slice::from_raw_parts(self.layouts, self.len) }
    }
}

/// The name of the symbol [`export_nf!`](crate::export_nf) exports its [`EventLayouts`] as
/// (absent from plugins built before it: nothing to check there beyond the root module).
pub const EVENT_LAYOUTS_SYMBOL: &[u8] = b"mbox_nf_event_layouts\0";

/// The root module for plugin type `P`; called by [`export_nf!`](crate::export_nf).
pub fn module_for<P: Plugin>() -> PluginModuleRef {
    PluginModule { descriptor: descriptor_glue::<P>, create: create_glue::<P>, outputs: outputs_glue::<P> }.leak_into_prefix()
}

/// Exports `$nf` (a type implementing [`Plugin`]) as this library's NF.
///
/// The plugin crate must be a `cdylib` and depend on `abi_stable` as well as `mbox-abi`.
#[macro_export]
macro_rules! export_nf {
    ($nf:ty) => {
        #[abi_stable::export_root_module]
        pub fn mbox_nf_root_module() -> $crate::plugin::PluginModuleRef {
            $crate::plugin::module_for::<$nf>()
        }

        /// The event structs' layouts, for the host's load-time check.
        #[no_mangle]
        pub static mbox_nf_event_layouts: $crate::plugin::EventLayouts = $crate::plugin::EventLayouts::of_this_build();
    };
}
