//! libFuzzer target `control`: see `mbox_fuzz::control::fuzz_control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::control::fuzz_control(data));
