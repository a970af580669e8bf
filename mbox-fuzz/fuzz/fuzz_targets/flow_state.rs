//! libFuzzer target `flow_state`: see `mbox_fuzz::flow_state::fuzz_flow_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::flow_state::fuzz_flow_state(data));
