//! libFuzzer target `stack`: see `mbox_fuzz::stack::fuzz_stack`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::stack::fuzz_stack(data));
