//! libFuzzer target `config`: see `mbox_fuzz::config::fuzz_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::config::fuzz_config(data));
