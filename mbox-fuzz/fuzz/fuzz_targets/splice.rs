//! libFuzzer target `splice`: see `mbox_fuzz::splice::fuzz_splice`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::splice::fuzz_splice(data));
