//! mbox-abi: everything that crosses the boundary between the mbox host and its NF plugins.
//!
//! - [`event_type`]: event types as packed paths, and the built-in tree.
//! - [`events`]: the `#[repr(C)]` event structs NFs read and publish.
//! - [`nf`]: the [`NetworkFunction`] trait authors implement, and the guarded FFI object.
//! - [`plugin`]: the root module a plugin exports, via [`export_nf!`].
//! - [`kit`]: helpers for NF authors (timestamps, flags, output files).
//! - [`ip_proto`], [`tcp_flags`]: the protocol numbers and TCP flag bits NFs compare against.
//!
//! A plugin depends on this crate and on `abi_stable`, implements [`NetworkFunction`] and
//! [`Plugin`], and calls `export_nf!(MyNf)`. The host refuses a plugin built against an
//! incompatible version of this crate before calling any of its code.

pub mod event_type;
pub mod events;
pub mod kit;
pub mod nf;
mod numbers;
pub mod plugin;

pub use event_type::{builtin, EventType};
pub use events::*;
pub use nf::{
    BindRequest, BindStatus, CommandEvent, CommandReply, Counter, Counters, Host, HostCalls, LogLevel, LogRequest, NetworkFunction, NfBox,
    PublishStatus, Sent, StreamOp, StreamRequest, StreamStatus, SubscribeRequest, SubscribeStatus, UnsubscribeStatus, Verdict,
    BIND_REQUEST, COMMAND_REPLY, HOST_REQUEST, LOG_REQUEST, NF_COMMAND, REOPEN_COMMAND, STREAM_REQUEST,
};
pub use numbers::{ip_proto, tcp_flags};
pub use plugin::{NfDescriptor, NfInit, Plugin, PluginInfo, PluginModule, PluginModuleRef, TypeBinding};

pub use abi_stable;

/// The version of this crate; plugins built against another minor version (0.x) are refused.
pub const ABI_CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");
