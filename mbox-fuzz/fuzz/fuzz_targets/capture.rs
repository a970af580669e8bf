//! libFuzzer target `capture`: see `mbox_fuzz::capture::fuzz_capture`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::capture::fuzz_capture(data));
