//! What mbox needs of the operating system, below both the I/O and the runtime (it imports
//! neither):
//!
//! - [`park`]: how idle threads spin, then park, and are woken.
//! - [`cores`]: pinning threads to cores (`[runtime] cores`, and undoing the EAL's pinning).
//! - [`stop`]: stopping a run from outside (Ctrl-C, SIGTERM).
//! - [`clock`]: CPU time of the process and of a thread.
//! - [`packet_sockets`]: what the kernel dropped or rolled over to another queue at the
//!   process's packet sockets (af_packet ports).

pub mod clock;
pub mod cores;
pub mod packet_sockets;
pub mod park;
pub mod stop;
