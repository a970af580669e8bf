//! libFuzzer target `reassembly`: see `mbox_fuzz::stack::fuzz_reassembly`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::stack::fuzz_reassembly(data));
