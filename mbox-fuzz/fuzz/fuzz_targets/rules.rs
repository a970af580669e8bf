//! libFuzzer target `rules`: see `mbox_fuzz::rules::fuzz_rules`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::rules::fuzz_rules(data));
