//! libFuzzer target `endpoint`: see `mbox_fuzz::endpoint::fuzz_endpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::endpoint::fuzz_endpoint(data));
