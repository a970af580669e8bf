//! libFuzzer target `quic`: see `mbox_fuzz::quic::fuzz_quic`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::quic::fuzz_quic(data));
