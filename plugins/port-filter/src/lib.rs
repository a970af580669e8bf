//! port-filter: drops TCP and UDP packets to or from the listed ports — a minimal NF that may
//! drop, so the service graph runs it in order: NFs listed after it see only what it passes,
//! and its drops keep packets from the output.
//!
//! Arguments: `drop_ports` (a list of port numbers).

use mbox_abi::ip_proto;
use mbox_abi::kit::Args;
use mbox_abi::{export_nf, EventHeader, Host, NetworkFunction, NfInit, PktEvent, Plugin, PluginInfo, Verdict};

pub struct PortFilter {
    /// One bit per port.
    blocked: Vec<u64>,
}

impl PortFilter {
    fn blocks(&self, port: u16) -> bool {
        self.blocked[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }
}

impl NetworkFunction for PortFilter {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        match event.view::<PktEvent>() {
            Some(p)
                if (p.ip_proto == ip_proto::TCP || p.ip_proto == ip_proto::UDP) && (self.blocks(p.src_port) || self.blocks(p.dst_port)) =>
            {
                Verdict::Drop
            }
            _ => Verdict::Pass,
        }
    }
}

impl Plugin for PortFilter {
    const INFO: PluginInfo = PluginInfo {
        name: "port-filter",
        version: env!("CARGO_PKG_VERSION"),
        description: "drops TCP/UDP packets to or from listed ports",
        subscribes: &["PKT"],
        publishes: &[],
        read_only: false,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["drop_ports"])?;
        let mut blocked = vec![0u64; 1024];
        for port in args.u64_list("drop_ports")? {
            let port = u16::try_from(port).map_err(|_| format!("drop_ports: {port} is not a port number"))?;
            blocked[usize::from(port) / 64] |= 1 << (port % 64);
        }
        Ok(PortFilter { blocked })
    }
}

export_nf!(PortFilter);
