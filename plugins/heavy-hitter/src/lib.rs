//! heavy-hitter: publishes `ALERT/HEAVY_HITTER` once for every flow whose bytes on the wire (both
//! directions) reach a threshold. A small example of an NF that registers its own event type,
//! extends a built-in one (`ALERT`) and publishes it for other NFs.
//!
//! Arguments: `threshold_bytes` (default 1,000,000).

use mbox_abi::kit::Args;
use mbox_abi::{
    export_nf, AlertEvent, Event, EventHeader, EventType, Host, NetworkFunction, NfInit, PktEvent, Plugin, PluginInfo, Verdict,
};

/// `ALERT/HEAVY_HITTER`: an alert plus the byte count that triggered it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HeavyHitterAlert {
    pub alert: AlertEvent,
    pub bytes: u64,
}

// SAFETY: repr(C), begins with AlertEvent (which begins with EventHeader); the header's size is
// set from this type by `AlertEvent::new::<HeavyHitterAlert>`.
unsafe impl Event for HeavyHitterAlert {}

/// The alert id this NF uses.
pub const HEAVY_HITTER_ID: u32 = 1;

pub struct HeavyHitter {
    threshold: u64,
    alert_type: EventType,
    /// By shard, then flow slot: (flow id, bytes so far, alerted).
    flows: Vec<Vec<(u64, u64, bool)>>,
}

impl NetworkFunction for HeavyHitter {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        let Some(pkt) = event.view::<PktEvent>() else { return Verdict::Pass };
        let flow = event.flow;
        if !flow.is_some() {
            return Verdict::Pass;
        }
        let table = &mut self.flows[usize::from(flow.shard)];
        let slot = flow.slot as usize;
        if table.len() <= slot {
            table.resize(slot + 1, (0, 0, false));
        }
        let entry = &mut table[slot];
        if entry.0 != flow.id {
            *entry = (flow.id, 0, false);
        }
        entry.1 += u64::from(pkt.wire_len);
        if entry.1 >= self.threshold && !entry.2 {
            entry.2 = true;
            let msg = format!("flow reached {} bytes (threshold {})", entry.1, self.threshold);
            let alert = HeavyHitterAlert {
                alert: AlertEvent::new::<HeavyHitterAlert>(self.alert_type, event, HEAVY_HITTER_ID, 3, &msg),
                bytes: entry.1,
            };
            host.publish(&alert);
        }
        Verdict::Pass
    }
}

impl Plugin for HeavyHitter {
    const INFO: PluginInfo = PluginInfo {
        name: "heavy-hitter",
        version: env!("CARGO_PKG_VERSION"),
        description: "alerts once per flow that reaches a byte threshold",
        subscribes: &["PKT"],
        publishes: &["ALERT/HEAVY_HITTER"],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["threshold_bytes"])?;
        let threshold = args.u64("threshold_bytes", 1_000_000)?.max(1);
        let alert_type = init.type_of("ALERT/HEAVY_HITTER").ok_or("the host did not register ALERT/HEAVY_HITTER")?;
        Ok(HeavyHitter { threshold, alert_type, flows: (0..init.shards).map(|_| Vec::new()).collect() })
    }
}

export_nf!(HeavyHitter);
