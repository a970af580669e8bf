//! The µStacks. Today: the L2/3 µStack — header parsing ([`wire`]), the bidirectional flow key
//! ([`flow_key`]), the flow table with timestamp-driven expiry ([`flow_table`]), IP fragment
//! reassembly ([`fragments`]), and the per-packet logic tying them together ([`l23`]).

pub mod flow_key;
pub mod flow_table;
pub mod fragments;
pub mod l23;
pub mod wire;
