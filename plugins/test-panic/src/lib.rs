//! test-panic: panics on purpose after a number of events. It exists to prove that a panicking
//! plugin does not take the host down: the host disables it, counts its events as dropped and
//! keeps running.
//!
//! Arguments: `panic_after` (default 100 events).

use mbox_abi::kit::Args;
use mbox_abi::{export_nf, EventHeader, Host, NetworkFunction, NfInit, Plugin, PluginInfo, Verdict};

pub struct TestPanic {
    seen: u64,
    panic_after: u64,
}

impl NetworkFunction for TestPanic {
    fn on_event(&mut self, _event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        self.seen += 1;
        if self.seen == self.panic_after {
            panic!("test-panic: deliberate panic at event {}", self.seen);
        }
        Verdict::Pass
    }
}

impl Plugin for TestPanic {
    const INFO: PluginInfo = PluginInfo {
        name: "test-panic",
        version: env!("CARGO_PKG_VERSION"),
        description: "panics on purpose (for fault-isolation tests)",
        subscribes: &["PKT"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["panic_after"])?;
        Ok(TestPanic { seen: 0, panic_after: args.u64("panic_after", 100)? })
    }
}

export_nf!(TestPanic);
