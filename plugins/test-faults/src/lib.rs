//! test-faults: misbehaves on purpose, for the host's fault-isolation and back-pressure tests.
//! It can panic after a number of events (the host must disable it and keep running) and be
//! slow (so rings fill up).
//!
//! Arguments: `panic_after` (panic on that event; 0, the default, never), `delay_us` (busy-wait
//! that long on every event; default 0), `log_every` (log a line through the host every that
//! many events, at info level; default 0, never).

use mbox_abi::kit::Args;
use mbox_abi::{export_nf, EventHeader, Host, LogLevel, NetworkFunction, NfInit, Plugin, PluginInfo, Verdict};
use std::time::{Duration, Instant};

pub struct TestFaults {
    seen: u64,
    panic_after: u64,
    delay: Duration,
    log_every: u64,
}

impl NetworkFunction for TestFaults {
    fn on_event(&mut self, _event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        self.seen += 1;
        if self.log_every > 0 && self.seen % self.log_every == 0 {
            host.log(LogLevel::Info, &format!("event {}", self.seen));
        }
        if self.seen == self.panic_after {
            panic!("test-faults: deliberate panic at event {}", self.seen);
        }
        if !self.delay.is_zero() {
            let start = Instant::now();
            while start.elapsed() < self.delay {
                std::hint::spin_loop();
            }
        }
        Verdict::Pass
    }
}

impl Plugin for TestFaults {
    const INFO: PluginInfo = PluginInfo {
        name: "test-faults",
        version: env!("CARGO_PKG_VERSION"),
        description: "panics or stalls on purpose (for fault-isolation and back-pressure tests)",
        subscribes: &["PKT"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["panic_after", "delay_us", "log_every"])?;
        Ok(TestFaults {
            seen: 0,
            panic_after: args.u64("panic_after", 0)?,
            delay: Duration::from_micros(args.u64("delay_us", 0)?),
            log_every: args.u64("log_every", 0)?,
        })
    }
}

export_nf!(TestFaults);
