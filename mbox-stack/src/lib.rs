//! The mbox µStacks as a library, with no threads and no I/O: the host's shards run them, and
//! so can an NF that wants its own stack (the baseline of the chain-length experiment).
//!
//! - [`wire`]: the dissector (link layer to TCP/UDP, tunnels) and typed header views that parse
//!   and emit (Ethernet, ARP, IPv4, IPv6, TCP with options, UDP), checksums, whole frames.
//! - [`flow_key`], [`flow_table`]: the bidirectional flow key and the per-shard flow table.
//! - [`fragments`]: IPv4/IPv6 reassembly.
//! - [`l23`]: the L2/3 µStack's per-packet logic, reporting into a [`l23::StackSink`].
//! - [`tcp`]: the TCP Monitor µStack: both sides' state and both directions reassembled.
//! - [`endpoint`]: the TCP Endpoint µStack: one connection's state machine, sans-IO (mbox
//!   terminates TCP itself).
//! - [`splicer`]: the TCP Splicer µStack's per-packet core: a client's connection and a
//!   backend's made one by rewriting each frame in place (addresses, sequence space,
//!   timestamps, window scale, checksums updated incrementally), sans-IO.
//! - [`nat`]: an L4 load balancer's per-packet core: a frame's IPv4 addresses and TCP or UDP
//!   ports rewritten in place, checksums updated incrementally.
//! - [`timer_wheel`]: a shard's timers (one deadline per connection), found when due.
//! - [`sim`]: a simulated network (seeded loss, reordering, duplication, delay) for tests and
//!   replays.

pub mod endpoint;
pub mod flow_key;
pub mod flow_table;
pub mod fragments;
pub mod l23;
pub mod nat;
pub mod sim;
pub mod splicer;
pub mod tcp;
pub mod timer_wheel;
pub mod wire;
