//! libFuzzer target `parse`: see `mbox_fuzz::stack::fuzz_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::stack::fuzz_parse(data));
