//! libFuzzer target `dns`: see `mbox_fuzz::dns::fuzz_dns`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::dns::fuzz_dns(data));
