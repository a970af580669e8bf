//! libFuzzer target `nat`: see `mbox_fuzz::nat::fuzz_nat`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::nat::fuzz_nat(data));
